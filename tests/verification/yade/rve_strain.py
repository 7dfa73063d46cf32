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
import os
import sys

import numpy as np
from yade import O, utils  # noqa: F401 (yade's builtins provide the engine classes)
from yade import Matrix3

sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))  # yade -x: argv[0] is this script
from yade_scene import load_scene  # noqa: E402

pack_path, spec_path, out_path = sys.argv[1:4]
scene = load_scene(pack_path)
z, dim, rho, rad, t = scene["z"], scene["dim"], scene["density"], scene["radius"], scene["thickness"]
spec = json.load(open(spec_path))
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
