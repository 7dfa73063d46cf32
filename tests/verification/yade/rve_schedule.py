"""YADE replay of a periodic RVE along a long schedule of piecewise-constant velocity gradients.

Usage (headless): ``yade -n -x rve_schedule.py PACKING.npz SCHEDULE.npz OUT.npz``

The same set-up as ``rve_strain.py`` (packing in the engine's format, 2D disks as spheres with
``blockedDOFs='zXY'`` and disk masses, saved shear forces restored), but for schedules of many
short intervals, such as the velocity gradients of the engine's stress-servoed triaxial test
(``engine.rve.triaxial(record=...)``: a new ``L`` every 5 steps). ``rve_strain.py`` calls
``O.run`` once per interval, which costs tens of ms each; here one ``O.run`` covers the whole
schedule and a ``PyRunner`` at the head of the engine list sets ``O.cell.velGrad`` at the start
of each interval and records the state. Both are equivalent to setting ``L`` and then running the
interval's steps (the order of ``rve_strain.py`` and of the engine).

SCHEDULE.npz: ``dt`` (s), ``L`` (n, 3, 3; 1/s, tension positive), ``steps`` (n; steps of each
interval), ``record`` (sorted step counts at which to record; 0 = the initial state).

Closed loop (optional): with ``servo_every`` (steps), ``servo_mask`` (3x3, 1 = servoed),
``servo_gain``, ``servo_ki``, ``servo_max_rate`` and ``servo_p0`` in SCHEDULE.npz, every
``servo_every`` steps the masked components of ``velGrad`` are set by the engine's PI stress servo
(``PeriodicCells.servo``, target ``-p0`` on the diagonal, 0 off it): with
``e = (sym(sigma)_ab + p0 delta_ab) / p0``, ``I_ab = clip(I_ab - ki e)``,
``L_ab dt = clip(-gain e + I_ab)`` (clip to +-max_rate), from YADE's own stress; the unmasked
components keep the schedule's values. This is the engine's ``triaxial`` run by YADE.

OUT.npz: ``steps`` (records), ``stress`` (records x 3 x 3, Pa, tension positive, YADE's
getStress), ``unbalanced``, ``cell`` (records x 3 x 3, hSize).
"""
import os
import sys

import numpy as np
from yade import O, utils  # noqa: F401 (yade's builtins provide the engine classes)
from yade import PyRunner, Matrix3

sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))  # yade -x: argv[0] is this script
from yade_scene import load_scene  # noqa: E402

pack_path, sched_path, out_path = sys.argv[1:4]
scene = load_scene(pack_path)
z, dim, rad = scene["z"], scene["dim"], scene["radius"]
sched = np.load(sched_path)
O.dt = float(sched["dt"])

Ls = np.asarray(sched["L"], float).reshape(-1, 3, 3)
n_steps = np.asarray(sched["steps"], int)
starts = np.concatenate([[0], np.cumsum(n_steps)])
total = int(starts[-1])
rec_at = set(int(k) for k in np.asarray(sched["record"], int))
rec = {"steps": [], "stress": [], "unbalanced": [], "cell": []}
iter0 = O.iter
state = {"next": 0}
servo = "servo_every" in sched.files
if servo:
    s_every = int(sched["servo_every"])
    s_mask = np.asarray(sched["servo_mask"], int) != 0
    s_gain, s_ki = float(sched["servo_gain"]), float(sched["servo_ki"])
    s_max, s_p0 = float(sched["servo_max_rate"]), float(sched["servo_p0"])
    s_int = np.zeros((3, 3))
    s_target = -s_p0 * np.eye(3)
    s_L = np.zeros((3, 3))


def record(k):
    rec["steps"].append(k)
    rec["stress"].append(np.array(utils.getStress()))
    rec["unbalanced"].append(utils.unbalancedForce())
    rec["cell"].append(np.array(O.cell.hSize))


def control():
    """Head of the step: ``k`` steps of the schedule are done, the ``k+1``-th is about to run."""
    k = O.iter - iter0
    if k in rec_at:
        record(k)      # the forces of the last step are still in the interactions
    i = state["next"]
    if i < len(Ls) and k == starts[i]:
        if servo:
            s_L[~s_mask] = Ls[i][~s_mask]
            if i == 0:
                s_L[s_mask] = Ls[i][s_mask]
            O.cell.velGrad = Matrix3(*s_L.reshape(-1))
        else:
            O.cell.velGrad = Matrix3(*Ls[i].reshape(-1))
        state["next"] = i + 1
    if servo and k > 0 and k % s_every == 0:
        sig = np.array(utils.getStress())
        err = (0.5 * (sig + sig.T) - s_target) / s_p0
        s_int[s_mask] = np.clip(s_int[s_mask] - s_ki * err[s_mask], -s_max, s_max)
        s_L[s_mask] = np.clip(-s_gain * err[s_mask] + s_int[s_mask], -s_max, s_max) / O.dt
        O.cell.velGrad = Matrix3(*s_L.reshape(-1))


O.engines = [PyRunner(command="control()", iterPeriod=1)] + O.engines
O.run(total, True)
if total in rec_at:
    record(total)
np.savez(out_path, **{k: np.asarray(v) for k, v in rec.items()})
print("done", O.iter - iter0)
