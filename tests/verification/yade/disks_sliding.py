"""A few disks (2D: spheres with ``blockedDOFs='zXY'``, disk mass and inertia) in a periodic cell
under a velocity gradient, with spins, damping and sliding contacts, for many steps: the reference
of tests/verification/test_dem_yade.py::test_few_disks_sliding_match_yade.

Usage (headless): ``yade -n -x disks_sliding.py SPEC.json OUT.npz``

SPEC.json: ``cell`` (2x2, m, columns are the cell vectors), ``pos`` (n x 2), ``radius`` (n),
``vel`` (n x 2, fluctuation velocity), ``spin`` (n, rad/s about z), ``L`` (2x2, 1/s), ``dt``,
``steps``, ``record_every``, ``young``, ``ratio`` (ks/kn), ``friction`` (angle, rad), ``density``,
``damping``, ``thickness``.

OUT.npz: ``steps``, ``spin`` (records x n), ``stress`` (records x 2 x 2, getStress in-plane),
``slip`` (records: number of contacts at the Coulomb limit), ``ncontacts`` (records).
"""
import json
import math
import sys

import numpy as np
from yade import O, utils  # noqa: F401
from yade import (ForceResetter, FrictMat, InsertionSortCollider, Bo1_Sphere_Aabb, InteractionLoop,
                  Ig2_Sphere_Sphere_ScGeom, Ip2_FrictMat_FrictMat_FrictPhys,
                  Law2_ScGeom_FrictPhys_CundallStrack, NewtonIntegrator, Matrix3, Vector3)

spec = json.load(open(sys.argv[1]))
t = float(spec["thickness"])
rho = float(spec["density"])
O.periodic = True
h = np.eye(3)
h[:2, :2] = np.asarray(spec["cell"], float)
h[2, 2] = t
O.cell.hSize = Matrix3(*h.reshape(-1))
mat = O.materials.append(FrictMat(young=float(spec["young"]), poisson=float(spec["ratio"]),
                                  frictionAngle=float(spec["friction"]), density=rho))
for p, r, v, w in zip(spec["pos"], spec["radius"], spec["vel"], spec["spin"]):
    b = utils.sphere(Vector3(p[0], p[1], 0.5 * t), float(r), material=mat)
    b.state.blockedDOFs = "zXY"
    m = rho * math.pi * r * r * t
    b.state.mass = m
    b.state.inertia = Vector3(1, 1, 1) * (0.5 * m * r * r)
    b.state.vel = Vector3(v[0], v[1], 0.0)
    b.state.angVel = Vector3(0.0, 0.0, float(w))
    O.bodies.append(b)
O.engines = [ForceResetter(), InsertionSortCollider([Bo1_Sphere_Aabb()]),
             InteractionLoop([Ig2_Sphere_Sphere_ScGeom()], [Ip2_FrictMat_FrictMat_FrictPhys()],
                             [Law2_ScGeom_FrictPhys_CundallStrack()]),
             NewtonIntegrator(damping=float(spec["damping"]))]
L = np.zeros((3, 3))
L[:2, :2] = np.asarray(spec["L"], float)
O.cell.velGrad = Matrix3(*L.reshape(-1))
# YADE applies an assigned velGrad in NewtonIntegrator, after the contact laws of that step (the
# engine uses it from the contacts of the next step on): one step of negligible length applies it
# (velocities become the fluctuation plus L x) and creates the interactions
O.dt = 1e-30
O.step()
O.dt = float(spec["dt"])
tan_phi = math.tan(float(spec["friction"]))
rec = {"steps": [], "spin": [], "stress": [], "slip": [], "ncontacts": []}
every = int(spec["record_every"])
for k in range(int(spec["steps"]) // every):
    O.run(every, True)
    rec["steps"].append((k + 1) * every)
    rec["spin"].append([b.state.angVel[2] for b in O.bodies])
    rec["stress"].append(np.array(utils.getStress())[:2, :2])
    slip = n = 0
    for i in O.interactions:
        if i.isReal:
            n += 1
            fs, fn = i.phys.shearForce.norm(), i.phys.normalForce.norm()
            slip += fs > (1 - 1e-9) * tan_phi * fn
    rec["slip"].append(slip)
    rec["ncontacts"].append(n)
np.savez(sys.argv[2], **{k: np.asarray(v) for k, v in rec.items()})
print("done", O.iter)
