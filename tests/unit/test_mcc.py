"""Modified Cam-Clay: gradients (every parameter, gate on/off, masked sub-steps), mcc_init options."""
import numpy as np
import pytest

from gradients import check_gradients, paths


def test_mcc_gradients_with_variable_substeps(ti_runtime):
    strain = paths(3, 24, 1e-3, seed=5)
    # linear rule: T = ceil(|d eps| / eps_ref) varies between steps (masked, unrolled sub-steps)
    path = check_gradients("mcc", strain, substep_rule="linear", eps_ref=8e-4)
    T = path.nsub.to_numpy()
    assert T.min() == 1 and path.nb == T.max() >= 2


def test_mcc_ncl_gradients_and_initial_size(ti_runtime):
    strain = paths(2, 16, 2e-3, seed=6)
    path = check_gradients("mcc", strain, deltas=(0.03,), mcc_init="ncl", n_sub=1,
                           p0=100e3)
    from kernels.stress_point import StressPointBatch

    b = StressPointBatch("mcc", 1, 100e3, mcc_init="ncl")
    d = b.diagnostics(b.initial_stress())
    assert d["px0"][0] == pytest.approx(35.3e6, rel=0.01)        # spec §7: OCR ~ 353
    assert path.param_values["N"] == 1.9


def test_mcc_nc_starts_on_yield_surface(ti_runtime):
    from kernels.stress_point import StressPointBatch

    b = StressPointBatch("mcc", 2, 100e3)
    d = b.diagnostics(b.initial_stress())
    assert np.allclose(d["f"], 0.0, atol=1e-14)
    assert np.allclose(d["px0"], 100e3)
