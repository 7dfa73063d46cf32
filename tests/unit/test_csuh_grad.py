"""Autodiff gradients of CSUH stresses w.r.t. every parameter vs central finite differences (f64),
on random loading-unloading-reloading paths, soft gate on (delta_r = 0.03) and off (0)."""
import numpy as np
import pytest


def assert_gradients_match(model, strain, **kw):
    import taichi as ti

    from engine import runtime
    from kernels.stress_point import gradient_check

    if runtime.real() != ti.f64:
        pytest.skip("gradient checks need --fp f64")
    path, results = gradient_check(model, strain, seed=3, **kw)
    pvals = np.abs([path.param_values[k] for k in path.param_names])
    for delta, g, fd in results:
        assert np.isfinite(g).all()
        a, f = g * pvals, fd * pvals                 # d loss / d ln(parameter)
        scale = np.abs(f).max()
        assert scale > 0
        for name, x, y in zip(path.param_names, a, f):
            assert abs(x - y) <= 1e-4 * abs(y) + 1e-6 * scale, (model, kw, delta, name, x, y)
    return path


def test_csuh_exp_gradients(ti_runtime):
    from kernels.stress_point import random_strain_paths

    path = assert_gradients_match("csuh", random_strain_paths(3, 24, 1e-3, seed=1), lode="exp", n_sub=1)
    assert path.nb == 1


def test_csuh_ts_gradients(ti_runtime):
    from kernels.stress_point import random_strain_paths

    assert_gradients_match("csuh", random_strain_paths(3, 24, 1e-3, seed=2), lode="ts", n_sub=1)


@pytest.mark.slow
@pytest.mark.parametrize("lode,grad", [("two-anchor", "full"), ("exp", "frozen"), ("none", "full")])
def test_csuh_other_lode_gradients(ti_runtime, lode, grad):
    from kernels.stress_point import random_strain_paths

    assert_gradients_match("csuh", random_strain_paths(2, 20, 1e-3, seed=4), lode=lode, lode_grad=grad, n_sub=1)
