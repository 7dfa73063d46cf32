"""Autodiff gradients of CSUH stresses w.r.t. every parameter vs central finite differences (f64),
on random loading-unloading-reloading paths, soft gate on (delta_r = 0.03) and off (0)."""
import pytest

from gradients import check_gradients as assert_gradients_match


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
