"""The DEM RVE against YADE: isotropic stiffness and a drained biaxial/triaxial test.

    python benchmarks/yade_compare.py --dim 2          # paper-size 1000 disks
    python benchmarks/yade_compare.py --dim 3          # paper-size 900 spheres

Prints one JSON line per case (``isotropic``, ``triaxial``). Both codes start from the same
packing (positions, cell, radii, saved contact shear forces) and follow the same
piecewise-constant velocity gradients ``L`` with the same time step (f64).

- ``isotropic``: ``L = -(eps / (dim n dt)) I`` for ``n = --iso-steps`` steps (volumetric strain
  about ``eps = --iso-strain``, compression), then ``--iso-relax`` steps at ``L = 0`` (fixed shape).
  Bulk stiffness ``K = (p - p0) / eps_v`` (``p`` compression positive, in 2D the in-plane mean;
  ``eps_v = 1 - det(h)/det(h0)``, in 2D the area strain), at the end of the compression
  (``K_load``) and after the relaxation (``K``), each code from its own cell and stress.
- ``triaxial``: the engine's :func:`engine.rve.triaxial` (last axis compressed at ``--strain-per-step``
  per step, the other axes servoed to ``-p0`` and the shears to zero, a new ``L`` every 5 steps)
  to ``--axial-strain``, recording every ``L`` it applied (``triaxial(record=...)``); YADE
  replays exactly that schedule (``tests/verification/yade/rve_schedule.py``), so its lateral
  stresses stay at ``p0`` only as far as the two codes agree. Reported: ``max |q/p engine -
  q/p YADE|`` to 1 % axial strain and over the whole path, the peak ``q/p`` of each and its
  relative difference, the largest deviation of YADE's (and the engine's) lateral stress from
  ``p0``, and the stress difference ``max |sigma_e - sigma_y| / max(p0, p_y)``.

- ``spread`` (``--noises``, ``--seed``): both codes closed loop (the engine's servo) from the
  packing with positions moved by each given number of mean radii: the sample spread of each code.

YADE runs headless (``yade -n -x``), one thread. ``--cases`` selects cases, ``--packing`` another
packing file, ``--keep DIR`` keeps the schedules and YADE outputs.
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = {2: "disks1000_100kPa.npz", 3: "spheres900_100kPa.npz"}
YADE_SCRIPT = ROOT / "tests" / "verification" / "yade" / "rve_schedule.py"


def run_yade_schedule(packing, dt, Ls, steps, record, workdir, servo=None):
    """Replay ``Ls`` ((n, 3, 3), 1/s) for ``steps`` (n,) each in YADE; record at step counts
    ``record``; ``servo`` (dict of ``servo_*`` settings) closes the loop. Returns the npz of rve_schedule.py as a dict of arrays."""
    exe = shutil.which("yade")
    if exe is None:
        raise RuntimeError("no `yade` executable on PATH")
    workdir = Path(workdir)
    sched = workdir / "schedule.npz"
    out = workdir / "yade_out.npz"
    np.savez(sched, dt=float(dt), L=np.asarray(Ls, float), steps=np.asarray(steps, int),
             record=np.asarray(record, int), **(servo or {}))
    res = subprocess.run([exe, "-n", "-x", str(YADE_SCRIPT), str(packing), str(sched), str(out)],
                         capture_output=True, text=True, timeout=3600, cwd=workdir)
    if res.returncode != 0 or not out.exists():
        raise RuntimeError("yade failed:\n" + (res.stdout + res.stderr)[-3000:])
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def _embed(L, dim):
    out = np.zeros(L.shape[:-2] + (3, 3))
    out[..., :dim, :dim] = L
    return out


def _sym(a):
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def _eps_v(h, dim):
    """Volumetric (2D: area) strain from cell matrices (n, >=dim, >=dim), compression positive."""
    d = np.linalg.det(h[:, :dim, :dim])
    return 1.0 - d / d[0]


def _path_err(se, sy, p0):
    """max over components |sym(se) - sym(sy)| / max(p0, |p_y|), per record (the test's measure)."""
    dim = se.shape[-1]
    scale = np.maximum(p0, np.abs(np.trace(sy, axis1=1, axis2=2)) / dim)
    return np.abs(_sym(se) - _sym(sy)).max(axis=(1, 2)) / scale


def isotropic(packing, strain=1e-3, steps=1000, relax=2000, every=50, workdir=None):
    """Same isotropic compression then relaxation in both codes; returns a dict of figures."""
    from kernels import packing as kpacking, runtime
    from kernels.packing import load_packing

    packing = Path(packing).resolve()
    p = load_packing(packing)
    dim = p.dim
    cells = kpacking.cells_from_packings([p], 1)
    dt = float(cells.dt.to_numpy()[0])
    L = -(strain / (dim * steps * dt)) * np.eye(dim)
    t0 = time.perf_counter()
    cells.measure()
    se, he = [cells.stress.to_numpy()[0].astype(float)], [cells.h_unflipped()[0]]
    for Lk, n in ((L, steps), (0.0 * L, relax)):
        cells.L.from_numpy(Lk[None].astype(runtime.np_real()))
        for _ in range(n // every):
            cells.step(every)
            cells.measure()
            se.append(cells.stress.to_numpy()[0].astype(float))
            he.append(cells.h_unflipped()[0])
    cells.check_capacity()
    t_eng = time.perf_counter() - t0
    se, he = np.array(se), np.array(he)
    n_rec = len(se)
    rec_steps = every * np.arange(n_rec)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        y = run_yade_schedule(packing, dt, _embed(np.stack([L, 0.0 * L]), dim), [steps, relax],
                              rec_steps, workdir or tmp)
    t_yade = time.perf_counter() - t0
    sy, hy = y["stress"][:, :dim, :dim], y["cell"]
    assert len(sy) == n_rec, (len(sy), n_rec)
    k_load = steps // every

    def K(s, h, i):
        pp = -np.trace(_sym(s), axis1=1, axis2=2) / dim
        ev = _eps_v(h, dim)
        return float((pp[i] - pp[0]) / ev[i]), float(ev[i]), float(pp[0])

    ke_l, ev_e, p0e = K(se, he, k_load)
    ky_l, ev_y, p0y = K(sy, hy, k_load)
    ke, _, _ = K(se, he, -1)
    ky, _, _ = K(sy, hy, -1)
    err = _path_err(se, sy, p0y)
    return {"case": "isotropic", "dim": dim, "packing": packing.name, "particles": p.n, "dt": dt,
            "strain_steps": steps, "relax_steps": relax, "eps_v_engine": ev_e, "eps_v_yade": ev_y,
            "p0_engine": p0e, "p0_yade": p0y,
            "K_load_engine": ke_l, "K_load_yade": ky_l, "K_load_rel_diff": (ke_l - ky_l) / ky_l,
            "K_engine": ke, "K_yade": ky, "K_rel_diff": (ke - ky) / ky,
            "max_stress_diff": float(err.max()), "engine_s": round(t_eng, 2), "yade_s": round(t_yade, 2)}


def engine_replay(p, Ls, steps, rec_steps, perturb=0.0, seed=0):
    """The engine along a given schedule (``Ls`` (n, dim, dim), ``steps`` (n,)) from packing ``p``
    whose positions are moved by ``perturb`` x the mean radius (normal random, seeded); returns
    the stress (records, dim, dim) at the step counts ``rec_steps``."""
    from dataclasses import replace

    from kernels import packing as kpacking, runtime

    rng = np.random.default_rng(seed)
    q = replace(p, pos=p.pos + perturb * p.radius.mean() * rng.standard_normal(p.pos.shape))
    cells = kpacking.cells_from_packings([q], 1)
    want = set(int(k) for k in rec_steps)
    out, done = [], 0
    cells.measure()
    if 0 in want:
        out.append(cells.stress.to_numpy()[0].astype(float))
    for L, n in zip(Ls, steps):
        cells.L.from_numpy(np.asarray(L)[None].astype(runtime.np_real()))
        cells.step(int(n))
        done += int(n)
        if done in want:
            cells.measure()
            out.append(cells.stress.to_numpy()[0].astype(float))
    cells.check_capacity()
    return _sym(np.array(out))


def _qp_compare(sa, sb, ea, dim, p0):
    """Figures of path ``sa`` against path ``sb`` (stresses (n, dim, dim)) over axial strains ``ea``."""
    from materials import invariants

    pa, qa = invariants.p_q_cell(sa, dim)
    pb, qb = invariants.p_q_cell(sb, dim)
    ra, rb = qa / pa, qb / pb
    to1 = ea <= 0.01 + 1e-12
    err = _path_err(sa, sb, p0)
    return {"max_dqp_to_1pct": float(np.abs(ra - rb)[to1].max()), "max_dqp": float(np.abs(ra - rb).max()),
            "peak_qp_rel_diff": float((ra.max() - rb.max()) / rb.max()),
            "max_stress_diff_to_1pct": float(err[to1].max()), "max_stress_diff": float(err.max()),
            "eps_a_diff_1e-3": float(ea[np.argmax(err > 1e-3)]) if (err > 1e-3).any() else None}


def _loading(packing, strain_per_step: float):
    """The packing's path and contents, its dimension, axial axis, time step and the axial rate (1/s)."""
    from kernels import packing as kpacking
    from kernels.packing import load_packing

    packing = Path(packing).resolve()
    p = load_packing(packing)
    dt = float(kpacking.cells_from_packings([p], 1).dt.to_numpy()[0])
    return packing, p, p.dim, p.dim - 1, dt, strain_per_step / dt


def triaxial_case(packing, axial_strain=0.04, strain_per_step=1e-6, p0=100e3, n_out=200,
                  workdir=None, noise=0.0):
    """The engine's drained biaxial/triaxial test replayed in YADE; returns a dict of figures."""
    from engine import rve
    from kernels import packing as kpacking, rve_batch
    from materials import invariants

    packing, p, dim, ax, dt, rate = _loading(packing, strain_per_step)
    rec = []
    t0 = time.perf_counter()
    res = rve.triaxial([p], axial_strain, rate, p0, n_out=n_out, record=rec)
    t_eng = time.perf_counter() - t0
    c = res["cells"][0]
    n_rows = len(c["p"])
    per_row = len(rec) // (n_rows - 1)
    assert per_row * (n_rows - 1) == len(rec), (len(rec), n_rows)
    steps = np.array([n for n, _ in rec])
    Ls = _embed(np.stack([L[0] for _, L in rec]), dim)
    cum = np.concatenate([[0], np.cumsum(steps)])
    rec_steps = cum[::per_row]
    assert len(rec_steps) == n_rows
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        y = run_yade_schedule(packing, dt, Ls, steps, rec_steps, workdir or tmp)
    t_yade = time.perf_counter() - t0
    sy = _sym(y["stress"][:, :dim, :dim])
    assert len(sy) == n_rows, (len(sy), n_rows)
    hy = y["cell"][:, :dim, :dim]
    se = c["stress"]
    py, qy = invariants.p_q_cell(sy, dim)
    pe, qe = c["p"], c["q"]
    rye, ryy = qe / pe, qy / py
    ea = c["eps_a"]
    ea_y = 1.0 - hy[:, ax, ax] / hy[0, ax, ax]
    to1 = ea <= 0.01 + 1e-12
    ie, iy = int(np.argmax(rye)), int(np.argmax(ryy))
    lat = [a for a in range(dim) if a != ax]
    lat_y = np.abs(-sy[:, lat, lat] - p0).max(axis=1) / p0
    lat_e = np.abs(-se[:, lat, lat] - p0).max(axis=1) / p0
    err = _path_err(se, sy, p0)
    out = {"case": "triaxial", "dim": dim, "packing": packing.name, "particles": p.n, "dt": dt,
            "p0": p0, "strain_per_step": strain_per_step, "rate": rate, "steps": int(cum[-1]),
            "servo_intervals": len(rec), "axial_strain": float(ea[-1]),
            "axial_strain_yade": float(ea_y[-1]),
            "max_dqp_to_1pct": float(np.abs(rye - ryy)[to1].max()),
            "max_dqp": float(np.abs(rye - ryy).max()),
            "peak_qp_engine": float(rye[ie]), "peak_qp_yade": float(ryy[iy]),
            "peak_qp_rel_diff": float((rye[ie] - ryy[iy]) / ryy[iy]),
            "eps_a_peak_engine": float(ea[ie]), "eps_a_peak_yade": float(ea_y[iy]),
            "qp_end_engine": float(rye[-1]), "qp_end_yade": float(ryy[-1]),
            "eps_v_end_engine": float(c["eps_v"][-1]), "eps_v_end_yade": float(_eps_v(hy, dim)[-1]),
            "lateral_dev_yade_to_1pct": float(lat_y[to1].max()), "lateral_dev_yade": float(lat_y.max()),
            "lateral_dev_engine": float(lat_e.max()),
            "max_stress_diff_to_1pct": float(err[to1].max()), "max_stress_diff": float(err.max()),
            "eps_a_diff_1e-3": float(ea[np.argmax(err > 1e-3)]) if (err > 1e-3).any() else None,
            "engine_s": round(t_eng, 2), "yade_s": round(t_yade, 2)}
    # closed loop: YADE runs the engine's servo on its own stress (same gains, same intervals)
    cells = kpacking.cells_from_packings([p], 1)
    mask = np.zeros((3, 3), int)
    mask[:dim, :dim] = 1
    mask[ax, ax] = 0
    gain = 0.1 * p0 / float(rve_batch.voigt_moduli(cells).max())   # triaxial(kappa=0.1)
    L0 = np.zeros((1, 3, 3))
    L0[0, ax, ax] = -rate
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ys = run_yade_schedule(packing, dt, L0, [int(cum[-1])], rec_steps, workdir or tmp,
                               servo=dict(servo_every=int(steps[0]), servo_mask=mask, servo_gain=gain,
                                          servo_ki=0.1 * gain, servo_max_rate=1e-3, servo_p0=p0))
    out["yade_servo_s"] = round(time.perf_counter() - t0, 2)
    ss = _sym(ys["stress"][:, :dim, :dim])
    hs = ys["cell"][:, :dim, :dim]
    ea_s = 1.0 - hs[:, ax, ax] / hs[0, ax, ax]
    ps, qs = invariants.p_q_cell(ss, dim)
    rys = qs / ps
    i_s = int(np.argmax(rys))
    lat_s = np.abs(-ss[:, lat, lat] - p0).max(axis=1) / p0
    out.update({"servo_max_dqp_to_1pct": float(np.abs(rye - rys)[to1].max()),
                "servo_max_dqp": float(np.abs(rye - rys).max()),
                "servo_peak_qp_yade": float(rys[i_s]), "servo_eps_a_peak_yade": float(ea_s[i_s]),
                "servo_peak_qp_rel_diff": float((rye[ie] - rys[i_s]) / rys[i_s]),
                "servo_qp_end_yade": float(rys[-1]), "servo_eps_v_end_yade": float(_eps_v(hs, dim)[-1]),
                "servo_lateral_dev_yade": float(lat_s[1:].max())})
    if noise > 0:
        # the engine against itself, from positions moved by `noise` mean radii: how far two
        # correct codes can agree along this path (the DEM's chaotic growth of tiny differences)
        from dataclasses import replace
        rng = np.random.default_rng(0)
        pn = replace(p, pos=p.pos + noise * p.radius.mean() * rng.standard_normal(p.pos.shape))
        cn = rve.triaxial([pn], axial_strain, rate, p0, n_out=n_out)["cells"][0]
        m = min(len(cn["p"]), n_rows)
        rn = cn["q"][:m] / cn["p"][:m]
        out.update({"noise": noise, "noise_max_dqp_to_1pct": float(np.abs(rye[:m] - rn)[to1[:m]].max()),
                    "noise_max_dqp": float(np.abs(rye[:m] - rn).max()), "noise_peak_qp": float(rn.max()),
                    "noise_peak_qp_rel_diff": float((rye[ie] - rn.max()) / rn.max())})
    return out


def _servo_settings(p, dim, rate, p0, every=5, kappa=0.1, max_rate=1e-3):
    """rve_schedule.py closed-loop settings equal to ``engine.rve.triaxial``'s servo for packing ``p``."""
    from kernels import packing as kpacking, rve_batch

    cells = kpacking.cells_from_packings([p], 1)
    ax = dim - 1
    mask = np.zeros((3, 3), int)
    mask[:dim, :dim] = 1
    mask[ax, ax] = 0
    gain = kappa * p0 / float(rve_batch.voigt_moduli(cells).max())
    L0 = np.zeros((1, 3, 3))
    L0[0, ax, ax] = -rate
    return L0, dict(servo_every=every, servo_mask=mask, servo_gain=gain, servo_ki=0.1 * gain,
                    servo_max_rate=max_rate, servo_p0=p0)


def spread_case(packing, noises, axial_strain=0.04, strain_per_step=1e-6, p0=100e3, n_out=100,
                workdir=None, seed=0):
    """Both codes, each closed loop (the engine's servo), from the packing with positions moved
    by ``noise`` mean radii (normal random, ``seed``) for each ``noise`` in ``noises`` (0: as
    saved): the sample-to-sample spread of each code along the biaxial/triaxial path, to judge
    whether an engine-YADE difference is systematic. Returns a dict of figures (peak q/p of each
    run, mean and spread per code)."""
    from dataclasses import replace

    from engine import rve
    from materials import invariants

    packing, p, dim, ax, dt, rate = _loading(packing, strain_per_step)
    runs = []
    with np.load(packing) as z:
        raw = {k: z[k] for k in z.files}
    for noise in noises:
        rng = np.random.default_rng(seed)
        pos = p.pos + noise * p.radius.mean() * rng.standard_normal(p.pos.shape)
        t0 = time.perf_counter()
        res = rve.triaxial([replace(p, pos=pos)], axial_strain, rate, p0, n_out=n_out)
        c = res["cells"][0]
        t_eng = time.perf_counter() - t0
        re = c["q"] / c["p"]
        total = int(res["steps"])            # YADE runs as many steps, so both end at the same strain
        rec_every = max(5, total // n_out // 5 * 5)
        L0, servo = _servo_settings(replace(p, pos=pos), dim, rate, p0)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            wd = Path(workdir or tmp)
            pk = wd / "packing_perturbed.npz"
            np.savez(pk, **{**raw, "pos": pos})
            y = run_yade_schedule(pk, dt, L0, [total], np.arange(0, total + 1, rec_every), wd,
                                  servo=servo)
        t_y = time.perf_counter() - t0
        sy = _sym(y["stress"][:, :dim, :dim])
        hy = y["cell"][:, :dim, :dim]
        py, qy = invariants.p_q_cell(sy, dim)
        ry = qy / py
        ea_y = 1.0 - hy[:, ax, ax] / hy[0, ax, ax]
        ie, iy = int(np.argmax(re)), int(np.argmax(ry))
        runs.append({"noise": noise, "peak_qp_engine": float(re[ie]), "eps_a_peak_engine": float(c["eps_a"][ie]),
                     "qp_end_engine": float(re[-1]), "eps_v_end_engine": float(c["eps_v"][-1]),
                     "peak_qp_yade": float(ry[iy]), "eps_a_peak_yade": float(ea_y[iy]),
                     "qp_end_yade": float(ry[-1]), "eps_v_end_yade": float(_eps_v(hy, dim)[-1]),
                     "engine_s": round(t_eng, 1), "yade_s": round(t_y, 1)})
        print(json.dumps({"case": "spread_run", **runs[-1]}), file=sys.stderr, flush=True)
    pe = np.array([r["peak_qp_engine"] for r in runs])
    py_ = np.array([r["peak_qp_yade"] for r in runs])
    return {"case": "spread", "dim": dim, "packing": packing.name, "particles": p.n, "runs": runs,
            "peak_engine_mean": float(pe.mean()), "peak_engine_std": float(pe.std(ddof=1)) if len(pe) > 1 else None,
            "peak_yade_mean": float(py_.mean()), "peak_yade_std": float(py_.std(ddof=1)) if len(py_) > 1 else None,
            "peak_mean_rel_diff": float((pe.mean() - py_.mean()) / py_.mean())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, choices=(2, 3), default=2)
    ap.add_argument("--packing", default=None, help="packing .npz (default: the paper-size one)")
    ap.add_argument("--cases", default="isotropic,triaxial", help="comma-separated: isotropic,triaxial,spread")
    ap.add_argument("--iso-strain", type=float, default=1e-3, help="volumetric strain of the compression")
    ap.add_argument("--iso-steps", type=int, default=1000)
    ap.add_argument("--iso-relax", type=int, default=2000)
    ap.add_argument("--axial-strain", type=float, default=0.04)
    ap.add_argument("--strain-per-step", type=float, default=1e-6, help="axial strain per step")
    ap.add_argument("--p0", type=float, default=100e3, help="lateral stress of the servo (Pa)")
    ap.add_argument("--noise", type=float, default=0.0,
                    help="also run the engine's triaxial from positions moved by this many mean "
                         "radii (e.g. 1e-10): the engine against itself, the chaotic floor")
    ap.add_argument("--noises", default="0,1e-10,1e-8,1e-6",
                    help="case spread: comma-separated position perturbations (mean radii)")
    ap.add_argument("--seed", type=int, default=0, help="case spread: seed of the perturbations")
    ap.add_argument("--keep", default=None, help="directory to keep the schedules and YADE outputs in")
    a = ap.parse_args(argv)

    from kernels import runtime

    runtime.init(arch="cpu", fp="f64")
    packing = Path(a.packing or ROOT / "assets" / "packings" / DEFAULT[a.dim])
    cases = [s.strip() for s in a.cases.split(",") if s.strip()]
    for case in cases:
        wd = None
        if a.keep:
            wd = Path(a.keep) / f"{packing.stem}_{case}"
            wd.mkdir(parents=True, exist_ok=True)
        if case == "isotropic":
            r = isotropic(packing, a.iso_strain, a.iso_steps, a.iso_relax, workdir=wd)
        elif case == "triaxial":
            r = triaxial_case(packing, a.axial_strain, a.strain_per_step, a.p0, workdir=wd,
                              noise=a.noise)
        elif case == "spread":
            r = spread_case(packing, [float(s) for s in a.noises.split(",")], a.axial_strain,
                            a.strain_per_step, a.p0, workdir=wd, seed=a.seed)
        else:
            raise SystemExit(f"--cases: unknown case {case!r}")
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    sys.exit(main())
