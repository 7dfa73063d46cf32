"""Cost estimates of study stages, from the mesh, the cell size and the steps (no compilation).

The rates are this project's measurements on a 2-core CPU (BENCHMARKS.md), kept as round
constants: an estimate says which stage dominates and roughly how long a study takes, not more.
A DEM macro step is assumed to cost its loading steps plus a fixed number of relaxation steps
(``RELAX_STEPS``: the batch relaxes until its slowest cell converges, which depends on the cells,
not on the loading steps; measured 12-150 in 2D and 90-280 in 3D with 64-particle cells).
"""
from __future__ import annotations

import functools

import numpy as np

DEM_S_PER_PARTICLE_STEP = {2: 2.0e-7, 3: 4.0e-7}   # batched 64-1000-particle cells, f64, 2 cores
SURROGATE_S_PER_POINT_STEP = 3.0e-6                 # CSUH Gauss point + its FEM share (cavity: 2.7e-6)
CALIBRATION_S_PER_POINT_ROW = 6.0e-6                # one epoch's forward + gradient per point and row
SETUP_S = 15.0                                      # set-up and compilation of one run
COMPARE_S = 10.0
RELAX_STEPS = {2: 100, 3: 200}                      # relaxation steps per DEM macro step (batch)


def human(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@functools.lru_cache(maxsize=64)
def _mesh(path: str, scale: float) -> tuple[int, int]:
    from engine.mesh import load_mesh

    m = load_mesh(path, scale)
    return m.dim, m.n_elem


def mesh_size(case) -> dict:
    """``dim``, ``elements`` and ``gauss_points`` of the case's mesh (read once per file)."""
    dim, n_elem = _mesh(str(case.mesh_file), case.mesh_scale)
    return {"dim": dim, "elements": n_elem, "gauss_points": n_elem * (8 if dim == 3 else 1)}


@functools.lru_cache(maxsize=64)
def particles(path: str) -> int:
    with np.load(path) as d:
        return int(d["radius"].shape[0])


def run_estimate(case, mesh: dict) -> tuple[float, str]:
    """(seconds, description) of one run of ``case``."""
    n, steps = mesh["gauss_points"], case.steps
    what = f"{case.material.model}, {n} Gauss points x {steps} steps"
    if case.material.model != "dem":
        return SETUP_S + n * steps * SURROGATE_S_PER_POINT_STEP, what
    dem = case.material.settings
    per_cell = np.mean([particles(p) for p in dem.packing])
    sub = dem.steps_per_increment + RELAX_STEPS[mesh["dim"]]
    seconds = SETUP_S + n * per_cell * steps * sub * DEM_S_PER_PARTICLE_STEP[mesh["dim"]]
    return seconds, f"{what}, cells of {per_cell:.0f} particles, ~{sub} DEM steps per increment"


def dataset_size(train_stage) -> tuple[int, int]:
    """(Gauss points, recorded rows) of a training run's dataset, from its final case."""
    m = train_stage.meta
    return m["gauss_points"], m["steps"] // m["dataset_every"]


def calibration_estimate(points: int, rows: int, epochs: int, optimizer: str) -> float:
    evals = epochs * (10 if optimizer == "cmaes" else 1)
    return SETUP_S + points * rows * evals * CALIBRATION_S_PER_POINT_ROW
