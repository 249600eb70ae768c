"""``--dump-outputs``: every frame's raw outputs written as the run goes, not held in memory.

The file is an ``.npz`` (a zip of ``.npy`` arrays) that ``numpy.load`` reads: ``f{index}_o{k}`` for each raw
output and ``f{index}_r`` for the decoded result when it is an array; streams after the first are prefixed
``s{stream}``. Kept in memory until the end, a 720p detector's outputs cost ~33 KB a frame; written as they
come, memory stays flat however long the run.
"""

from __future__ import annotations

import os
import threading
import zipfile
from typing import Any

import numpy as np

from vidprof.profiling.errors import RunError


class OutputsWriter:
    def __init__(self, path: str) -> None:
        self.path = path
        self._tmp = f"{path}.partial"
        try:
            self._zip = zipfile.ZipFile(self._tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
        except OSError as e:
            raise RunError(f"--dump-outputs {path}: cannot write ({e.strerror or e}); choose a writable path") from e
        self._lock = threading.Lock()  # every stream's postprocess thread writes here

    def add(self, stream: int, index: int, outputs: list[np.ndarray], result: Any) -> None:
        prefix = f"s{stream}" if stream else ""
        arrays = {f"{prefix}f{index}_o{k}": out for k, out in enumerate(outputs)}
        if isinstance(result, np.ndarray):
            arrays[f"{prefix}f{index}_r"] = result
        with self._lock:
            for name, a in arrays.items():
                with self._zip.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(a), allow_pickle=False)

    def close(self) -> None:
        """Finish the file; it appears under its name only now, complete."""
        with self._lock:
            self._zip.close()
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        with self._lock:
            self._zip.close()
        try:
            os.unlink(self._tmp)
        except OSError:
            pass
