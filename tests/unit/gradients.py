"""Shared check of autodiff gradients against finite differences for the model tests."""
import numpy as np


def check_gradients(model, strain, **kw):
    import taichi as ti

    from kernels import runtime
    from kernels.stress_point import gradient_check

    assert runtime.real() == ti.f64, "finite-difference checks need f64 (tests/backend_skips.py skips them in f32)"
    path, results = gradient_check(model, strain, seed=3, **kw)
    pvals = np.abs([path.param_values[k] for k in path.param_names])
    for delta, g, fd in results:
        a, f = g * pvals, fd * pvals                 # d loss / d ln(parameter)
        scale = np.abs(f).max()
        assert np.isfinite(a).all() and scale > 0
        for name, x, y in zip(path.param_names, a, f):
            assert abs(x - y) <= 1e-4 * abs(y) + 1e-6 * scale, (model, kw, delta, name, x, y)
    return path


def paths(*a, **k):
    from kernels.stress_point import random_strain_paths

    return random_strain_paths(*a, **k)
