"""``curves.csv``: one row per step: step, time (s), then the case's named quantities."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from engine.recorders.base import Recorder, Step


class CurveWriter:
    """Rows of ``curves.csv``; ``append`` continues an existing file (no header)."""

    def __init__(self, path: Path, names: list[str], append: bool = False):
        self.path = path
        self.file = open(path, "a" if append else "w", newline="")
        self.writer = csv.writer(self.file)
        if not append:
            self.writer.writerow(["step", "time"] + list(names))

    def write(self, step: int, time: float, values) -> None:
        self.writer.writerow([step, repr(float(time))] + [repr(float(v)) for v in values])

    def close(self) -> None:
        self.file.close()


class CurveRecorder(Recorder):
    """Writes every step's curve values (the initial row of a new run is all zeros)."""

    def __init__(self, path: Path, names: list[str], append: bool = False):
        self.writer = CurveWriter(path, names, append)

    def on_step(self, s: Step) -> None:
        self.writer.write(s.step, s.time, s.values)

    def close(self) -> None:
        self.writer.close()


def read_curves(path: Path) -> dict[str, np.ndarray]:
    """Columns of a ``curves.csv`` as arrays."""
    data = np.genfromtxt(path, delimiter=",", names=True)
    return {name: np.atleast_1d(data[name]) for name in data.dtype.names}
