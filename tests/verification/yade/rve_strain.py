"""YADE reference run of a periodic RVE along piecewise-constant velocity gradients.

Usage (headless): ``yade -n -x rve_strain.py PACKING.npz SPEC.json OUT.npz [FINAL_PACKING.npz]``

PACKING.npz is in the engine's packing format (docs/packing.md). SPEC.json holds
``dt`` (s), ``record_every`` (steps) and ``segments``: a list of ``{"L": 3x3, "steps": n}``
(1/s, tension positive). 2D packings become spheres in a periodic box of depth ``thickness``
with ``blockedDOFs='zXY'`` and the disks' mass ``rho pi r^2 t`` and inertia ``m r^2 / 2``,
so that YADE's ``getStress`` is the engine's 2D stress. Saved contact state (``c_ids``, ``c_fs``)
is restored after one step of negligible length that creates the interactions.

OUT.npz: ``steps`` (records), ``stress`` (records x 3 x 3, Pa, tension positive, YADE's
getStress), ``unbalanced``, ``cell`` (records x 3 x 3), and ``ids``/``shear``/``normal`` of the
final contacts. FINAL_PACKING.npz, if given, is the final state written by YADE in the engine's
packing format with the contact state (unwrapped positions, as YADE stores them).
"""
import json
import math
import sys

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

newton = NewtonIntegrator(damping=float(z["damping"]))
O.engines = [ForceResetter(), InsertionSortCollider([Bo1_Sphere_Aabb()]),
             InteractionLoop([Ig2_Sphere_Sphere_ScGeom()], [Ip2_FrictMat_FrictMat_FrictPhys()],
                             [Law2_ScGeom_FrictPhys_CundallStrack()]),
             newton]

# create the interactions with a step of negligible length, then restore the shear forces
O.dt = 1e-30
O.step()
if "c_ids" in z and len(z["c_ids"]):
    fs = np.asarray(z["c_fs"], float)
    missing = 0
    for (i, j), f in zip(np.asarray(z["c_ids"], int), fs):
        inter = O.interactions[int(i), int(j)]
        if inter is None or not inter.isReal:
            missing += 1
            continue
        v = np.zeros(3)
        v[:dim] = f
        sign = 1.0 if inter.id1 == int(i) else -1.0
        inter.phys.shearForce = Vector3(*(sign * v))
    print("restored shear forces; missing", missing)
O.dt = float(spec["dt"])

rec = {"steps": [], "stress": [], "unbalanced": [], "cell": []}


def record(k):
    rec["steps"].append(k)
    rec["stress"].append(np.array(utils.getStress()))
    rec["unbalanced"].append(utils.unbalancedForce())
    rec["cell"].append(np.array(O.cell.hSize))


done = 0
record(0)
every = int(spec["record_every"])
for seg in spec["segments"]:
    O.cell.velGrad = Matrix3(*np.asarray(seg["L"], float).reshape(-1))
    for _ in range(int(seg["steps"]) // every):
        O.run(every, True)
        done += every
        record(done)
ids, sh, nr = [], [], []
for inter in O.interactions:
    if inter.isReal:
        ids.append((inter.id1, inter.id2))
        sh.append(np.array(inter.phys.shearForce))
        nr.append(np.array(inter.geom.normal))
np.savez(out_path, **{k: np.asarray(v) for k, v in rec.items()}, ids=np.array(ids), shear=np.array(sh),
         normal=np.array(nr))
if len(sys.argv) > 4:
    hs = np.array(O.cell.hSize)
    P = np.array([np.array(b.state.pos) for b in O.bodies])
    fn = np.array([np.linalg.norm(np.array(inter.phys.normalForce)) for inter in O.interactions if inter.isReal])
    np.savez(sys.argv[4], dim=dim, cell=hs[:dim, :dim], pos=P[:, :dim], radius=rad, young=float(z["young"]),
             poisson=float(z["poisson"]), friction=float(z["friction"]), density=rho,
             damping=float(z["damping"]), thickness=t, stress=np.array(utils.getStress())[:dim, :dim],
             c_ids=np.array(ids), c_fn=fn, c_fs=np.array(sh)[:, :dim], c_normal=np.array(nr)[:, :dim])
print("done", done)
