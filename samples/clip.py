"""A sample clip written with OpenCV: moving shapes on a gradient, so the codec has real work."""

from __future__ import annotations

import os
import secrets

import cv2
import numpy as np


def _create_beside(folder: str, suffix: str) -> str:
    """A new, uniquely named file in ``folder``, created as ``open()`` creates one: 0666 less the umask
    (mkstemp's 0600 is meant for secrets, and would keep the clip from other users of a shared cache)."""
    while True:
        tmp = os.path.join(folder, f".vidprof-clip-{secrets.token_hex(8)}{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def write_clip(path: str, width: int = 1280, height: int = 720, frames: int = 300, fps: float = 30.0,
               fourcc: str = "mp4v") -> str:
    """Write ``frames`` frames to ``path`` atomically (temp file + rename) and return ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1] or ".mp4"
    tmp = _create_beside(folder, suffix)
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        os.unlink(tmp)
        raise RuntimeError(f"OpenCV cannot write {fourcc} video to {path}")
    try:
        yy, xx = np.mgrid[0:height, 0:width]
        # uint8 sums wrap at 256, so these are the (x + 4i) % 256 and (y/2 + 2i) % 256 gradients without a
        # full-frame int64 sum per frame: the same frames, written faster, on a first run that waits for them.
        xx8, yy8 = (xx % 256).astype(np.uint8), (yy // 2 % 256).astype(np.uint8)
        base = np.empty((height, width, 3), np.uint8)
        for i in range(frames):
            t = i / fps
            np.add(xx8, np.uint8(i * 4 % 256), out=base[..., 0])
            np.add(yy8, np.uint8(i * 2 % 256), out=base[..., 1])
            base[..., 2] = 60
            img = base.copy()
            for k in range(5):
                cx = int((0.5 + 0.4 * np.sin(t * (0.7 + k * 0.3) + k)) * width)
                cy = int((0.5 + 0.35 * np.cos(t * (0.5 + k * 0.2) + 2 * k)) * height)
                r = max(4, min(width, height) // (8 + 2 * k))
                colour = (40 * k % 256, 255 - 40 * k, 80 + 30 * k)
                if k % 2:
                    cv2.circle(img, (cx, cy), r, colour, -1)
                else:
                    cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
            cv2.putText(img, f"vidprof {i:04d}", (max(2, width // 40), max(12, height // 10)),
                        cv2.FONT_HERSHEY_SIMPLEX, max(0.3, height / 720), (255, 255, 255), 2)
            writer.write(img)
    finally:
        writer.release()
    os.replace(tmp, path)
    return path
