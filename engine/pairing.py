"""How a comparison pairs the rows of two runs: by time, by step or by a recorded loading quantity.

Each run's pairing quantity ``s`` is read from its ``curves.csv`` (one row per step): ``time`` (s),
``step``, or any curve column (e.g. ``axial_strain``). ``s`` must change monotonically over the run
(in the same direction in every run); steps between rows (dataset rows, frames) get ``s`` by linear
interpolation in the step. Two runs are compared on the range of ``s`` both cover; a run's values are
interpolated linearly in ``s`` onto the reference's rows, and a frame is paired with the frame of the
other run nearest in ``s`` (the offset is reported).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.views import RunError

BUILT_IN = {"time": "s", "step": "-"}


@dataclass(frozen=True)
class Axis:
    """One run's pairing quantity ``values`` at ``steps``; ``sign`` (+1 or -1) makes it increasing."""
    name: str
    unit: str
    steps: np.ndarray
    values: np.ndarray
    sign: float
    label: str

    def at_steps(self, steps) -> np.ndarray:
        """The quantity at ``steps`` (linear in the step between recorded rows)."""
        return np.interp(np.asarray(steps, dtype=float), self.steps, self.values)

    def key(self, values) -> np.ndarray:
        """Values turned increasing (for interpolation and ranges)."""
        return self.sign * np.asarray(values, dtype=float)

    @property
    def range(self) -> tuple[float, float]:
        """(low, high) of the increasing key."""
        k = self.key(self.values)
        return float(k.min()), float(k.max())


def choices(curves: dict) -> list[str]:
    """Quantities a comparison can pair by: time, step and the curve columns."""
    return list(BUILT_IN) + [k for k in curves if k not in BUILT_IN]


def axis(label: str, curves: dict, by: str, path) -> Axis:
    """The pairing quantity ``by`` of one run (``curves``: its curves.csv columns; ``path`` for messages)."""
    if by not in curves:
        raise RunError(f"--pair-by {by!r} is not a quantity of {path} (allowed: {', '.join(choices(curves))})")
    steps, values = np.asarray(curves["step"], float), np.asarray(curves[by], float)
    ok = np.isfinite(values)
    steps, values = steps[ok], values[ok]
    d = np.diff(values)
    if len(values) < 2 or not np.any(d):
        raise RunError(f"--pair-by {by}: {by} does not change over the run {path}; pair by time")
    if np.all(d >= 0) or np.all(d <= 0):
        return Axis(by, BUILT_IN.get(by, ""), steps, values, 1.0 if d.sum() > 0 else -1.0, label)
    raise RunError(f"--pair-by {by}: {by} goes up and down over the run {path} (not monotonic); pair by time")


def common_range(ref: Axis, run: Axis) -> tuple[float, float]:
    """The range of the (increasing) key both runs cover; a one-line RunError when there is none."""
    if run.sign != ref.sign:
        raise RunError(f"--pair-by {ref.name}: it increases in one of {ref.label} and {run.label} and decreases "
                       f"in the other; the runs are not comparable by {ref.name}")
    (a0, a1), (b0, b1) = ref.range, run.range
    lo, hi = max(a0, b0), min(a1, b1)
    if hi <= lo:
        raise RunError(f"{run.label} and {ref.label} have no common {ref.name} range ({ref.label}: "
                       f"{_span(ref)}, {run.label}: {_span(run)}); they are not comparable by {ref.name}")
    return lo, hi


def in_range(key: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Mask of the keys inside [lo, hi] (with a relative tolerance of 1e-9 of the span)."""
    tol = 1e-9 * max(hi - lo, abs(hi), abs(lo), 1e-300)
    return (key >= lo - tol) & (key <= hi + tol)


def interp_rows(a: np.ndarray, key_from: np.ndarray, key_to: np.ndarray) -> np.ndarray:
    """``a`` (n, rows, ...) sampled at the increasing keys ``key_from``, linearly interpolated at ``key_to``."""
    key_from = np.asarray(key_from, float)
    k = np.clip(np.searchsorted(key_from, key_to, side="right") - 1, 0, max(len(key_from) - 2, 0))
    if len(key_from) == 1:
        return np.repeat(a[:, :1], len(key_to), axis=1)
    span = key_from[k + 1] - key_from[k]
    w = np.where(span > 0, (np.asarray(key_to) - key_from[k]) / np.where(span > 0, span, 1.0), 0.0)
    w = np.clip(w, 0.0, 1.0).reshape((1, -1) + (1,) * (a.ndim - 2))
    return (1.0 - w) * a[:, k] + w * a[:, k + 1]


def nearest(keys: np.ndarray, key: float) -> int:
    """Index of the entry of ``keys`` nearest to ``key``."""
    return int(np.argmin(np.abs(np.asarray(keys, float) - key)))


def fmt(value: float, unit: str) -> str:
    """A pairing value with its unit, e.g. ``0.05 s``."""
    return f"{value:.4g}" + (f" {unit}" if unit and unit != "-" else "")


def _span(a: Axis) -> str:
    return f"{fmt(a.values.min(), a.unit)}..{fmt(a.values.max(), a.unit)}"
