"""A real trained model for the tests and the INT8 bench, and a clip it can see something in.

Random weights make accuracy meaningless, so INT8 is judged on a trained model: PP-OCRv4's text detector
(a DB detector: one [1, 1, H, W] text-probability map), which the ``rapidocr-onnxruntime`` wheel ships as
an ONNX file. The wheel is fetched from PyPI with ``pip download`` once, the file read out of it, and the
file kept in a cache folder, so a second run downloads nothing; vidprof itself never downloads anything.

The clip: words rendered with OpenCV's ``putText``, moving across a textured background, so every frame
has text for the detector to find and no two frames are alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile

import cv2
import numpy as np

WHEEL = "rapidocr-onnxruntime"
WHEEL_VERSION = "1.4.4"
# Inside that wheel (checked with `pip download` and a look at its files): PP-OCRv4 detection, PP-OCRv4
# recognition and a mobile v2 text-direction classifier.
TEXT_DETECTOR = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
TEXT_DIRECTION = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"
# PP-OCR's detector normalisation: (x / 255 - 0.5) / 0.5, i.e. mean 127.5 and scale 127.5 in pixel units.
DETECTOR_ARGS = ("--mean", "127.5", "--scale", "127.5", "--threshold", "0.3")
# The detector's input sides must be multiples of 32 (its feature pyramid halves the image five times).
SIDE_MULTIPLE = 32


class Unavailable(Exception):
    """The registry could not be reached or the wheel did not hold the file: the caller skips (or fails
    when servers are required)."""


def fetch_model(cache_dir: str, member: str = TEXT_DETECTOR) -> str:
    """The path of ``member`` of the wheel, from ``cache_dir`` if it is there, else fetched into it."""
    os.makedirs(cache_dir, exist_ok=True)
    target = os.path.join(cache_dir, f"{WHEEL_VERSION}-{os.path.basename(member)}")
    if os.path.exists(target):
        return target
    with tempfile.TemporaryDirectory(prefix="vidprof-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet",
               f"{WHEEL}=={WHEEL_VERSION}", "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise Unavailable(f"pip download {WHEEL}=={WHEEL_VERSION} timed out after 300 s") from e
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            raise Unavailable(f"pip download {WHEEL}=={WHEEL_VERSION} failed: {last}")
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if not wheels:
            raise Unavailable(f"pip download {WHEEL}=={WHEEL_VERSION} left no wheel")
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as z:
            if member not in z.namelist():
                raise Unavailable(f"{wheels[0]} has no {member}")
            partial = target + f".part{os.getpid()}"
            with open(partial, "wb") as f:
                f.write(z.read(member))
            os.replace(partial, target)  # atomic: a concurrent fetch sees the whole file or none
    return target


WORDS = ("VIDEO", "PROFILER", "OpenVINO", "INT8", "Calibrate", "frames", "speed 42", "latency", "EXIT 7",
         "Platform 3", "12:45", "Keep left")


def write_text_clip(path: str, width: int = 320, height: int = 192, frames: int = 60, fps: float = 30.0,
                    seed: int = 0) -> str:
    """A clip of words drifting over a textured background (mp4v); returns ``path``."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(40, 200, (height, width, 3), dtype=np.uint8), (0, 0), 6)
    n = 4
    words = [WORDS[(seed + k) % len(WORDS)] for k in range(n)]
    start = rng.uniform([0.05 * width, 0.15 * height], [0.5 * width, 0.9 * height], size=(n, 2))
    speed = rng.uniform(-2.0, 2.0, size=(n, 2)) * (width / 320)
    scale = rng.uniform(0.5, 0.9, size=n) * (height / 192)
    colours = [(250, 250, 250), (20, 20, 20), (30, 220, 250), (240, 60, 40)]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for i in range(frames):
            img = np.roll(background, i, axis=1).copy()  # the background drifts too: no two frames alike
            for k in range(n):
                x, y = start[k] + speed[k] * i
                x = float(x) % (0.6 * width)
                y = 0.15 * height + float(y) % (0.75 * height)
                cv2.putText(img, words[(k + i // 40) % n], (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX, float(scale[k]),
                            colours[k % len(colours)], 2, cv2.LINE_AA)
            writer.write(img)
    finally:
        writer.release()
    return path
