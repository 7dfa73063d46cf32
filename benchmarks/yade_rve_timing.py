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
import sys
import time

import numpy as np
from yade import O, utils  # noqa: F401 (yade's builtins provide the engine classes)
from yade import (ForceResetter, FrictMat, InsertionSortCollider, Bo1_Sphere_Aabb, InteractionLoop,
                  Ig2_Sphere_Sphere_ScGeom, Ip2_FrictMat_FrictMat_FrictPhys,
                  Law2_ScGeom_FrictPhys_CundallStrack, NewtonIntegrator, Matrix3, Vector3)

pack_path, spec_path, out_path = sys.argv[1:4]
z = np.load(pack_path)
spec = json.load(open(spec_path))
dim = int(z["dim"])
cell = np.asarray(z["cell"], float)
pos = np.asarray(z["pos"], float)
rad = np.asarray(z["radius"], float)
t = float(z["thickness"]) if "thickness" in z else 0.1
rho = float(z["density"])

O.periodic = True
h = np.eye(3)
h[:dim, :dim] = cell
if dim == 2:
    h[2, 2] = t
O.cell.hSize = Matrix3(*h.reshape(-1))
mat = O.materials.append(FrictMat(young=float(z["young"]), poisson=float(z["poisson"]),
                                  frictionAngle=float(z["friction"]), density=rho))
for p, r in zip(pos, rad):
    c = np.zeros(3)
    c[:dim] = p
    if dim == 2:
        c[2] = 0.5 * t
    b = utils.sphere(Vector3(*c), float(r), material=mat)
    if dim == 2:
        b.state.blockedDOFs = "zXY"
        m = rho * math.pi * r * r * t
        b.state.mass = m
        b.state.inertia = Vector3(1, 1, 1) * (0.5 * m * r * r)
    O.bodies.append(b)

O.engines = [ForceResetter(), InsertionSortCollider([Bo1_Sphere_Aabb()]),
             InteractionLoop([Ig2_Sphere_Sphere_ScGeom()], [Ip2_FrictMat_FrictMat_FrictPhys()],
                             [Law2_ScGeom_FrictPhys_CundallStrack()]),
             NewtonIntegrator(damping=float(z["damping"]))]

O.dt = 1e-30
O.step()
if "c_ids" in z and len(z["c_ids"]):
    for (i, j), f in zip(np.asarray(z["c_ids"], int), np.asarray(z["c_fs"], float)):
        inter = O.interactions[int(i), int(j)]
        if inter is None or not inter.isReal:
            continue
        v = np.zeros(3)
        v[:dim] = f
        inter.phys.shearForce = Vector3(*((1.0 if inter.id1 == int(i) else -1.0) * v))
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
