"""The decoder table: each decoder is recognised from its own outputs, refuses others when forced, and
``DECODERS`` follows the table."""

from __future__ import annotations

import numpy as np
import pytest

from vidprof.profiling.errors import RunError
from vidprof.stages.frame import Frame
from vidprof.stages.postprocess import (
    DECODER_TABLE,
    DECODERS,
    PASSTHROUGH,
    Postprocess,
    PostprocessOptions,
    pick_decoder,
)

# One representative head per decoder: a decoder added to the table without one here fails the tests.
SHAPES: dict[str, list[tuple[int, ...]]] = {
    "detection": [(1, 16, 4), (1, 16, 3)],
    "ssd": [(1, 1, 10, 7)],
    "classification": [(1, 10)],
    "probability_map": [(1, 1, 24, 40)],
    "passthrough": [(1, 17, 3, 3)],
}
NAMES = [d.name for d in DECODER_TABLE]


def outputs(shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random(s, dtype=np.float32) for s in shapes]


def test_every_decoder_has_a_representative_head() -> None:
    assert sorted(SHAPES) == sorted(NAMES)


def test_decoders_lists_the_table_after_auto() -> None:
    assert DECODERS == ("auto", *NAMES)
    assert len(set(DECODERS)) == len(DECODERS)


@pytest.mark.parametrize("name", NAMES)
def test_decoder_is_recognised_and_runs(name: str) -> None:
    shapes = SHAPES[name]
    assert pick_decoder(shapes) == name
    for kind in ("auto", name):
        post = Postprocess(PostprocessOptions(kind=kind, threshold=0.3), shapes)
        assert post.kind == name
        frame = Frame(0, outputs=outputs(shapes))
        post.process(frame)
        assert frame.result is not None
        post.close()


@pytest.mark.parametrize("name", NAMES)
def test_passthrough_recognises_nothing(name: str) -> None:
    assert not PASSTHROUGH.recognises(SHAPES[name], ())


@pytest.mark.parametrize("name, other", [(n, o) for n in NAMES if n != PASSTHROUGH.name for o in NAMES if o != n])
def test_forced_decoder_that_does_not_fit_is_an_error(name: str, other: str) -> None:
    with pytest.raises(RunError, match=f"--postprocess {name}: .* do not fit it .*look like {other}"):
        Postprocess(PostprocessOptions(kind=name), SHAPES[other])


@pytest.mark.parametrize("name", NAMES)
def test_forced_passthrough_fits_anything(name: str) -> None:
    post = Postprocess(PostprocessOptions(kind="passthrough"), SHAPES[name])
    frame = Frame(0, outputs=outputs(SHAPES[name]))
    post.process(frame)
    assert post.kind == "passthrough" and frame.result is frame.outputs


def test_detection_takes_boxes_from_the_output_named_like_boxes() -> None:
    # Four classes: both outputs have 4 columns, so only the names say which holds the boxes.
    boxes = np.array([[[0.1, 0.1, 0.5, 0.5]]], np.float32)
    scores = np.array([[[0.1, 0.2, 0.9, 0.1]]], np.float32)
    post = Postprocess(PostprocessOptions(), [(1, 1, 4), (1, 1, 4)], ["scores", "boxes"])
    frame = Frame(0, outputs=[scores, boxes])
    post.process(frame)
    np.testing.assert_allclose(frame.result, [[0.1, 0.1, 0.5, 0.5, 0.9, 2.0]], rtol=1e-6)
