"""``vidprof optimize``'s options: argparse only, so the command line is built without importing OpenVINO."""

from __future__ import annotations

import argparse

DEFAULT_CALIBRATION_FRAMES = 300
PRESETS = ("performance", "mixed")  # NNCF's: symmetric activations, or asymmetric ones (for skewed activations)


def add_optimize_arguments(p: argparse.ArgumentParser) -> None:
    own = p.add_argument_group("quantisation")
    own.add_argument("--output", required=True, metavar="PATH.xml",
                     help="where to write the INT8 model (an OpenVINO IR: PATH.xml and PATH.bin)")
    own.add_argument("--calibration-frames", type=int, default=DEFAULT_CALIBRATION_FRAMES, metavar="N",
                     help=f"frames drawn evenly from the source(s) to calibrate on (default "
                          f"{DEFAULT_CALIBRATION_FRAMES})")
    own.add_argument("--preset", default="performance",
                     help="performance (default: symmetric) | mixed (asymmetric activations, for skewed ones)")
    run = p.add_argument_group("source, model and preprocessing (as for run)")
    run.add_argument("--source", action="append", default=[],
                     help="video file, image folder, camera, URL or synthetic:WxH@FPS (repeatable; default: the "
                          "embedded sample clip)")
    run.add_argument("--model", help="the float model to quantise (default: the embedded sample detector)")
    run.add_argument("--preprocess", default="separate",
                     help="separate (default) | fused | host: the placement the model will run with")
    run.add_argument("--model-color", default="bgr", help="bgr (default) | rgb")
    run.add_argument("--mean", help="per-channel mean to subtract, as for run")
    run.add_argument("--scale", help="per-channel divisor, as for run")
    out = p.add_argument_group("output")
    out.add_argument("--quiet", action="store_true", help="no progress")
    out.add_argument("--debug", action="store_true", help="show tracebacks")
