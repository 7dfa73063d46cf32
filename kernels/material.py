"""The one interface between the FEM (or an element test) and a Gauss-point material batch.

Every model of ``kernels.registry`` builds an object of this shape for ``n_points`` points.
Stresses and strains are full 3x3, tension positive, Pa; ``deps`` and ``stress`` are Taichi
``Matrix.field(3, 3)`` of length ``n_points`` that stay on the device.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


class MaterialFailure(RuntimeError):
    """The material could not advance a step for a reason outside its physics (a partitioned DEM
    batch lost a worker); the run stops with this message and keeps its outputs up to the last step."""


@runtime_checkable
class MaterialBatch(Protocol):
    n_points: int

    def update(self, deps, stress) -> None:
        """Advance every point by its strain increment ``deps``; ``stress`` is read and overwritten (Pa)."""

    def initial_stress(self) -> np.ndarray:
        """(n_points, 3, 3) stress before the first increment (Pa, tension positive)."""

    def snapshot(self) -> dict:
        """Internal state as numpy arrays, for checkpoints and trial updates."""

    def restore(self, state: dict) -> None:
        """Inverse of :meth:`snapshot`."""

    def wave_modulus(self) -> float:
        """Largest constrained (P-wave) modulus over the points (Pa), for the stable time step."""

    def check(self, step: int) -> str:
        """After each step: a message when the material failed (the run stops), else ''."""

    def diagnostics(self, stress: np.ndarray) -> dict:
        """Model diagnostics at ``stress`` (n_points, 3, 3) and the current state: name -> (n_points,)."""

    def step_report(self) -> dict:
        """Counts of the last update shown in the progress line and kept per step in ``run.json``
        (DEM cells: loose, capped, relaxation steps, inertia number); {} for models without them."""

    def point_flags(self) -> dict:
        """Per-point flags of the last update (name -> (n_points,) bool), written to datasets and
        VTK frames (DEM cells: loose, capped); {} for models without them."""

    def timings(self) -> dict:
        """Wall time of the material's own phases so far (s, e.g. DEM loading and relaxation),
        for ``run.json``; {} for models without them."""


@runtime_checkable
class WritesOwnCheckpoint(Protocol):
    """A batch whose state lives in other processes (``kernels.partition``): for a checkpoint each
    worker writes its slice's :meth:`MaterialBatch.snapshot` into a file of its own, and the
    checkpoint file keeps only the index of those files (``parts_range``: (k, 2) first and end
    point of each slice, ``parts_file``: (k,) file names relative to the checkpoint folder)."""

    def save_parts(self, folder: Path, stem: str) -> dict:
        """Have every worker write its slice under ``folder`` (names from ``stem``); the index."""

    def load_parts(self, index: dict, folder: Path) -> None:
        """Restore from a checkpoint's index (written by any partition): each worker reads its points."""


PARTS_KEYS = ("parts_range", "parts_file")


def read_parts(index: dict, folder: Path, start: int = 0, stop: int | None = None) -> dict:
    """The snapshot of points ``start .. stop-1`` assembled from the slice files of a checkpoint
    index (see :class:`WritesOwnCheckpoint`), whatever partition wrote them."""
    ranges, files = np.asarray(index["parts_range"]), [str(f) for f in index["parts_file"]]
    stop = int(ranges[-1, 1]) if stop is None else stop
    pieces: dict = {}
    for (a, b), name in zip(ranges, files):
        lo, hi = max(a, start), min(b, stop)
        if lo < hi:
            with np.load(Path(folder) / name) as z:
                for k in z.files:
                    pieces.setdefault(k, []).append(z[k][lo - a:hi - a])
    return {k: np.concatenate(v) for k, v in pieces.items()}


class NoReports:
    """The optional parts of the interface for a model that has none: no per-step counts, no
    per-point flags, no phases of its own."""

    def step_report(self) -> dict:
        return {}

    def point_flags(self) -> dict:
        return {}

    def timings(self) -> dict:
        return {}


class StatelessBatch(NoReports):
    """Defaults for a batch without internal state that starts from -p0 I: subclasses set
    ``n_points`` and ``p0`` (Pa, compression positive) and give ``update`` and ``wave_modulus``."""
    n_points: int
    p0: float

    def initial_stress(self) -> np.ndarray:
        """(n_points, 3, 3) initial stress -p0 I (Pa, tension positive)."""
        return np.broadcast_to(-self.p0 * np.eye(3), (self.n_points, 3, 3)).copy()

    def snapshot(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        return None

    def check(self, step: int) -> str:
        return ""

    def diagnostics(self, stress: np.ndarray) -> dict:
        return {}
