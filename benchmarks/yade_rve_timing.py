"""YADE timing of one periodic RVE cell: the reference for ``benchmarks/dem_rve.py --yade``.

Usage (headless, one thread):
``yade -j1 -n -x benchmarks/yade_rve_timing.py PACKING.npz SPEC.json OUT.json``

Loads PACKING.npz (engine packing format, docs/packing.md) exactly as
``tests/verification/yade/rve_strain.py`` does: the same contact law
(``Ip2_FrictMat_FrictMat_FrictPhys`` + ``Law2_ScGeom_FrictPhys_CundallStrack``), the packing's
``NewtonIntegrator`` damping, 2D packings as spheres with ``blockedDOFs='zXY'`` and disk masses,
the saved shear forces restored after one step of negligible length. SPEC.json holds ``dt`` (s),
``L`` (3x3 velocity gradient, 1/s), ``steps`` (timed steps), ``warmup`` (untimed steps run
first) and ``min_time`` (s, default 0). Only ``O.run(N, True)`` is timed (not Python start-up,
loading or the warm-up), as one call: ``O.run(n, True)`` waits by polling, which adds tens of ms
per call, so short runs are not timed on their own. ``N = k * steps`` with the smallest ``k`` for
which an untimed probe run of ``steps`` steps (after the warm-up) predicts at least ``min_time``;
the loading simply continues through the probe and the timed run.
OUT.json: ``wall_s``, ``steps`` (N), ``particles``, ``particle_steps_per_s``, ``threads`` (OpenMP
threads, ``yade -jN``), ``contacts`` (real interactions at the end), ``yade`` (version).
"""
import json
import math
import os
import sys
import time

import numpy as np
from yade import O  # noqa: F401 (importing yade sets up its builtins)
from yade import Matrix3

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "..", "tests", "verification", "yade"))
from yade_scene import load_scene  # noqa: E402

pack_path, spec_path, out_path = sys.argv[1:4]
scene = load_scene(pack_path)
z, dim, rad = scene["z"], scene["dim"], scene["radius"]
spec = json.load(open(spec_path))
O.dt = float(spec["dt"])
O.cell.velGrad = Matrix3(*np.asarray(spec["L"], float).reshape(-1))

if int(spec.get("warmup", 0)):
    O.run(int(spec["warmup"]), True)
n = int(spec["steps"])
min_time = float(spec.get("min_time", 0.0))
k = 1
if min_time > 0:
    t0 = time.perf_counter()
    O.run(n, True)
    k = max(1, math.ceil(min_time / (time.perf_counter() - t0)))
n *= k
t0 = time.perf_counter()
O.run(n, True)
wall = time.perf_counter() - t0

import yade.config
threads = int(O.numThreads)   # OpenMP threads (yade -jN)
ver = str(getattr(yade.config, "version", ""))
out = {"wall_s": wall, "steps": n, "particles": len(rad), "particle_steps_per_s": len(rad) * n / wall,
       "threads": threads, "contacts": sum(1 for i in O.interactions if i.isReal), "yade": ver}
json.dump(out, open(out_path, "w"))
print(json.dumps(out))
