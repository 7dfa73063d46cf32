"""StressPointBatch / StressPathBatch interface: one integrator for the FEM, replay and autodiff."""
import numpy as np
import pytest
import taichi as ti


def _fields(n, real):
    return ti.Matrix.field(3, 3, real, shape=n), ti.Matrix.field(3, 3, real, shape=n)


def test_update_snapshot_restore_wave(ti_runtime):
    from kernels.registry import point_batch as make_material_batch
    from kernels.stress_point import StressPointBatch

    b = make_material_batch("csuh", 4, 100e3)
    assert isinstance(b, StressPointBatch)
    assert np.allclose(b.initial_stress(), -100e3 * np.eye(3))
    # K + 4G/3 at p0 with K = (1 + e0) p0 / kappa
    K = 1.721 * 100e3 / 0.04
    G = 1.5 * K * 0.6 / 1.2
    assert b.wave_modulus() == pytest.approx(K + 4 * G / 3, rel=1e-12)
    deps, stress = _fields(4, ti_runtime.real())
    stress.from_numpy(b.initial_stress())
    d = np.zeros((4, 3, 3))
    d[:, 2, 2] = -1e-4 * np.arange(1, 5)
    d[:, 0, 1] = d[:, 1, 0] = 2e-5                 # plane-strain kinematics: zz, xz, yz may be zero
    deps.from_numpy(d)
    snap = b.snapshot()
    b.update(deps, stress)
    s1 = stress.to_numpy()
    assert np.allclose(s1, np.swapaxes(s1, 1, 2))
    assert np.all(s1[:, 2, 2] < -100e3)
    assert b.counts()["steps"] == 4
    after = b.snapshot()
    assert np.all(after["H"] > 0) and np.all(after["e"] < 0.721)
    b.restore(snap)                                  # same increment again from the same state
    stress.from_numpy(b.initial_stress())
    b.update(deps, stress)
    assert np.allclose(stress.to_numpy(), s1, rtol=0, atol=1e-9)
    assert b.wave_modulus() > K + 4 * G / 3


def test_fem_update_replay_and_autodiff_path_agree(ti_runtime):
    from kernels.stress_point import StressPathBatch, StressPointBatch, random_strain_paths, replay

    strain = random_strain_paths(2, 12, 1e-3, seed=0)
    opts = dict(lode="exp", delta_r=0.03, substep_rule="linear", eps_ref=6e-4)
    s_replay = replay(strain, 100e3, "csuh", None, opts)
    b = StressPointBatch("csuh", 2, 100e3, **opts)
    deps, stress = _fields(2, ti_runtime.real())
    stress.from_numpy(b.initial_stress())
    prev = np.zeros((2, 3, 3))
    for t in range(12):
        deps.from_numpy(strain[:, t] - prev)
        prev = strain[:, t]
        b.update(deps, stress)
        assert np.allclose(stress.to_numpy(), s_replay[:, t], rtol=1e-12, atol=1e-7)
    path = StressPathBatch("csuh", 2, 12, 100e3, needs_grad=False, **opts)
    assert path.load_strain(strain) >= 2
    path.forward()
    assert np.allclose(path.stresses(), s_replay, rtol=1e-12, atol=1e-7)


def test_lode_rotating_path_drift_full_vs_frozen(ti_runtime):
    """Spec §11 check 1: with the full yield gradient the drift on a Lode-rotating path is first
    order in the sub-step; with the frozen (TS) gradient it does not converge."""
    from kernels.stress_point import StressPointBatch

    drift = {}
    for grad in ("full", "frozen"):
        for n_sub in (10, 40):
            b = StressPointBatch("csuh", 1, 100e3, lode="exp", lode_grad=grad, delta_r=0.0, n_sub=n_sub)
            deps, stress = _fields(1, ti_runtime.real())
            stress.from_numpy(b.initial_stress())
            a1 = np.diag([0.5, 0.5, -1.0]) / np.sqrt(1.5)       # unit deviatoric directions
            a2 = np.diag([1.0, -1.0, 0.0]) / np.sqrt(2.0)
            path = [0.004 * t / 10 * a1 for t in range(1, 11)]
            path += [0.004 * (np.cos(th) * a1 + np.sin(th) * a2) for th in np.linspace(0, 2 * np.pi, 61)[1:]]
            prev, fmax = np.zeros((3, 3)), 0.0
            for k, eps in enumerate(path):
                deps.from_numpy((eps - prev)[None])
                prev = eps
                b.update(deps, stress)
                if k >= 10:
                    fmax = max(fmax, b.diagnostics(stress.to_numpy())["f"][0])
            drift[grad, n_sub] = fmax
    assert drift["full", 40] < 0.4 * drift["full", 10]
    assert drift["frozen", 40] > 0.7 * drift["frozen", 10]
    assert drift["frozen", 40] > 10 * drift["full", 40]


def test_float32_runs(request):
    """The same paths in f32 and f64 on the fixture's arch. f32 rounding is 6e-8 per operation;
    over 10 steps x 2 sub-steps of return mapping (~20 updates, each a few dozen operations that
    mostly do not compound) the error stays of order 1e-6 of the stress scale (2.8e-7 measured on
    x64), so 2e-5 of the scale: tight enough to catch a wrong-precision constant or a lost
    sub-step (those shift the stress by >1e-4 of the scale), loose enough for FMA/ordering
    differences on a GPU."""
    from kernels import runtime
    from kernels.stress_point import replay, random_strain_paths

    arch = request.config.getoption("--arch")
    strain = random_strain_paths(2, 10, 1e-3, seed=0)
    out = {}
    try:
        for fp in ("f64", "f32"):
            try:
                runtime.init(arch, fp)
            except Exception as exc:  # pragma: no cover - depends on the machine
                pytest.skip(f"arch {arch} unavailable: {exc}")
            assert runtime.precision() == fp
            out[fp] = np.asarray(replay(strain, 100e3, "csuh", None, dict(n_sub=2)))
    finally:
        runtime.reset()
    s32, s64 = out["f32"], out["f64"]
    assert np.isfinite(s32).all() and s64[:, -1, 2, 2].max() < -100e3
    scale = np.abs(s64).max()
    np.testing.assert_allclose(s32, s64, rtol=0, atol=2e-5 * scale)
    assert not np.array_equal(s32, s64)      # really ran in two precisions


def test_bad_inputs(ti_runtime):
    from kernels.registry import point_batch as make_material_batch
    from kernels.stress_point import StressPointBatch

    with pytest.raises(ValueError, match="lode"):
        StressPointBatch("csuh", 1, 100e3, lode="bogus")
    with pytest.raises(ValueError, match="is not a key of model mcc"):
        StressPointBatch("mcc", 1, 100e3, lode="exp")
    with pytest.raises(ValueError, match="p0"):
        StressPointBatch("csuh", 1, -1.0)
    with pytest.raises(ValueError, match="model"):
        make_material_batch("foo", 1, 100e3)


def test_reverse_sweep_equals_taichi_tape(ti_runtime):
    """`gradient` replays the adjoints itself (so the bridge can reuse a forward's history); it must
    give what `ti.ad.Tape` gives, bit for bit, with and without re-running the forward."""
    from kernels.stress_point import StressPathBatch, random_strain_paths

    # one sub-step: quick to compile; 3 points x 24 steps, the shape of test_csuh_grad's exp check,
    # whose compiled kernels this batch loads from the cache when that test ran first
    path = StressPathBatch("csuh", 3, 24, 100e3, needs_grad=True, lode="exp", delta_r=0.03)
    assert path.load_strain(random_strain_paths(3, 24, 5e-5, seed=5)) == 1
    w = np.random.default_rng(2).normal(size=(3, 24, 3, 3)) * 1e-5
    loss, grad = path.gradient(w)
    # the documented loss, sum(weights * stress), written here against the public history field
    wf = ti.Matrix.field(3, 3, ti_runtime.real(), shape=w.shape[:2])
    wf.from_numpy(w.astype(ti_runtime.np_real()))

    @ti.kernel
    def weighted_loss():
        for i, t in wf:
            path.loss[None] += (wf[i, t] * path.sig_hist[i, t + 1]).sum()

    path.loss[None] = 0.0
    with ti.ad.Tape(loss=path.loss):
        path.forward()
        weighted_loss()
    assert float(path.loss[None]) == loss
    np.testing.assert_array_equal(path.params.grad.to_numpy(), grad)
    path.forward()
    again = path.gradient(w, recompute=False)
    assert again[0] == loss
    np.testing.assert_array_equal(again[1], grad)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_event_counters_are_per_point_and_old_totals_restore(ti_runtime):
    """Counters live per point (32-bit, no atomics: Vulkan has no 64-bit atomics and returned
    garbage); counts() sums them; a checkpoint with the old totals-only counters keeps its sums."""
    from kernels.stress_point import COUNTERS, StressPointBatch

    b = StressPointBatch("csuh", 3, 100e3)
    deps, stress = _fields(3, ti_runtime.real())
    stress.from_numpy(b.initial_stress())
    d = np.zeros((3, 3, 3))
    d[:, 2, 2] = -2e-4
    deps.from_numpy(d)
    for _ in range(5):
        b.update(deps, stress)
    snap = b.snapshot()
    assert snap["counters"].shape == (3, len(COUNTERS)) and list(snap["counters"][:, 0]) == [5, 5, 5]
    assert b.counts()["steps"] == 15 and b.counts()["substeps"] >= 15
    totals = np.array([5 * 10**9 + 7, 40, 0, 3, 0, 1], dtype=np.int64)   # old format, over int32 in all
    b.restore({**snap, "counters": totals})
    assert list(b.counts().values()) == totals.tolist()
    with pytest.raises(ValueError, match="counters must have shape"):
        b.restore({**snap, "counters": np.zeros((2, len(COUNTERS)))})
    with pytest.raises(ValueError, match="at most 2..31 - 1 per point"):
        b.restore({**snap, "counters": np.full(len(COUNTERS), 7 * 10**9)})
