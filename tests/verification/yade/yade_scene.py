"""A packing file in the engine's format (docs/packing.md) as a periodic YADE scene.

Shared by the YADE scripts in this folder and ``benchmarks/yade_rve_timing.py`` (run under
``yade -n -x``; they put this folder on ``sys.path``). 2D packings become spheres in a periodic
box of depth ``thickness`` with ``blockedDOFs='zXY'`` and the disks' mass ``rho pi r^2 t`` and
inertia ``m r^2 / 2``, so that YADE's ``getStress`` is the engine's 2D stress. The contact law is
``Ip2_FrictMat_FrictMat_FrictPhys`` + ``Law2_ScGeom_FrictPhys_CundallStrack`` with the packing's
constants and ``NewtonIntegrator(damping)``. Saved contact state (``c_ids``, ``c_fs``) is restored
after one step of negligible length that creates the interactions.
"""
import math

import numpy as np
from yade import O, utils  # noqa: F401 (yade's builtins provide the engine classes)
from yade import (ForceResetter, FrictMat, InsertionSortCollider, Bo1_Sphere_Aabb, InteractionLoop,
                  Ig2_Sphere_Sphere_ScGeom, Ip2_FrictMat_FrictMat_FrictPhys,
                  Law2_ScGeom_FrictPhys_CundallStrack, NewtonIntegrator, Matrix3, Vector3)


def load_scene(pack_path: str) -> dict:
    """Build the scene in ``O`` from PACKING.npz; returns ``z`` (the file), ``dim``, ``thickness``,
    ``density``, ``radius`` and ``newton`` (the integrator). ``O.dt`` is left at 1e-30: set it."""
    z = np.load(pack_path)
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

    O.dt = 1e-30
    O.step()
    if "c_ids" in z and len(z["c_ids"]):
        missing = 0
        for (i, j), f in zip(np.asarray(z["c_ids"], int), np.asarray(z["c_fs"], float)):
            inter = O.interactions[int(i), int(j)]
            if inter is None or not inter.isReal:
                missing += 1
                continue
            v = np.zeros(3)
            v[:dim] = f
            sign = 1.0 if inter.id1 == int(i) else -1.0
            inter.phys.shearForce = Vector3(*(sign * v))
        print("restored shear forces; missing", missing)
    return {"z": z, "dim": dim, "thickness": t, "density": rho, "radius": rad, "newton": newton}
