"""Which Gauss points of a dataset a calibration uses, and how much each one weighs.

Filters apply in this order, each to what the previous left: ``max_eps_s`` (the largest deviatoric
strain eps_s = sqrt(2/3 e:e) of a point over its history, dimensionless), ``p_range`` (Pa,
compression positive: every retained row's mean stress inside [lo, hi]; 2D data uses the in-plane
mean -(s11 + s22) / 2), ``region`` (a box on the Gauss-point coordinates, m), ``first`` (the first N
of what is left), ``point_stride`` (every k-th), ``sample`` (a random subset of N drawn with
``seed``). Point weights: ``uniform`` (Eq. 17 as in the paper: points with large stresses weigh
most), ``equal`` (each point's own squared stresses normalised to one, so that every point counts
as much as any other), or an array / ``.npy`` file of one weight >= 0 per dataset point.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from materials.invariants import p_q_cell, stress_strain

POINT_WEIGHTS = ("uniform", "equal")


@dataclass
class Selection:
    """Point selection and weights (see the module docstring for units and order)."""
    max_eps_s: float | None = None
    p_range: tuple | None = None
    region: tuple | None = None
    first: int | None = None
    point_stride: int = 1
    sample: int | None = None
    seed: int = 0
    point_weights: str = "uniform"
    component_weights: tuple | None = None

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def point_measures(raw: dict) -> dict:
    """Per point: ``max_eps_s`` (-), ``p_min``, ``p_max`` (Pa, compression +) over the history."""
    dim = 3 if raw.get("kinematics", "3d") == "3d" else 2
    es = stress_strain(np.zeros_like(raw["strain"][:, :1]), raw["strain"])["eps_s"]
    p, _ = p_q_cell(raw["stress"][..., :dim, :dim], dim)
    return {"max_eps_s": es.max(axis=1), "p_min": np.nanmin(p, axis=1), "p_max": np.nanmax(p, axis=1)}


def _region_mask(raw: dict, region) -> np.ndarray:
    coords = raw.get("coords")
    if coords is None:
        raise ValueError("region: the dataset holds no Gauss-point coordinates (coords); "
                         "select by --max-eps-s, --p-range, --sample or --point-stride instead")
    coords = np.asarray(coords, float)
    d = coords.shape[1]
    box = np.asarray(region, float)
    if len(box) not in (4, 6) or len(box) // 2 > d:
        raise ValueError(f"region: expected xmin,xmax,ymin,ymax[,zmin,zmax] for {d}D coordinates, got {list(box)}")
    keep = np.ones(len(coords), bool)
    for k in range(len(box) // 2):
        keep &= (coords[:, k] >= box[2 * k]) & (coords[:, k] <= box[2 * k + 1])
    return keep


def select(raw: dict, sel: Selection) -> np.ndarray:
    """Sorted dataset indices of the selected points; ValueError naming the filter if none is left."""
    n = raw["strain"].shape[0]
    keep = np.ones(n, bool)
    m = point_measures(raw) if sel.max_eps_s is not None or sel.p_range is not None else None
    if sel.max_eps_s is not None:
        keep &= m["max_eps_s"] <= sel.max_eps_s
    if sel.p_range is not None:
        lo, hi = sel.p_range
        keep &= (m["p_min"] >= lo) & (m["p_max"] <= hi)
    if sel.region is not None:
        keep &= _region_mask(raw, sel.region)
    idx = np.flatnonzero(keep)
    if sel.first:
        idx = idx[: sel.first]
    idx = idx[:: max(int(sel.point_stride), 1)]
    if sel.sample is not None and sel.sample < len(idx):
        idx = np.sort(np.random.default_rng([sel.seed, 17]).choice(idx, sel.sample, replace=False))
    if len(idx) == 0:
        raise ValueError(f"no Gauss point is left by the selection {sel.to_json()} (of {n} points)")
    return idx


def point_weights(raw: dict, idx: np.ndarray, sel: Selection, mask: np.ndarray, stress: np.ndarray):
    """(len(idx),) weights of the selected points, or None for ``uniform``."""
    w = sel.point_weights
    if w == "uniform":
        return None
    if w == "equal":
        own = np.einsum("tij,ntij->n", mask, stress ** 2)
        return np.where(own > 0, own.mean() / np.where(own > 0, own, 1.0), 0.0)
    path = Path(w)
    if not path.is_file():
        raise ValueError(f"point weights {w!r}: not one of {', '.join(POINT_WEIGHTS)} nor a .npy file")
    arr = np.asarray(np.load(path), float).ravel()
    if len(arr) != raw["strain"].shape[0] or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"point weights {path}: need {raw['strain'].shape[0]} finite weights >= 0 "
                         f"(one per dataset point), got {len(arr)}")
    return arr[idx]
