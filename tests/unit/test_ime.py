"""Enhanced IME: gradients (every parameter, gate on/off), elastic start, dilation guard [A15]."""
import numpy as np
import pytest

from gradients import check_gradients, paths


def test_ime_gradients(ti_runtime):
    strain = paths(3, 24, 1.5e-3, seed=7)
    path = check_gradients("ime", strain, n_sub=1)
    st = path.states()
    assert st["eps_s"].max() > 0          # the path yields


def test_ime_elastic_start_and_dilation_floor(ti_runtime):
    from kernels.stress_point import StressPointBatch

    b = StressPointBatch("ime", 1, 100e3)
    d = b.diagnostics(b.initial_stress())
    assert d["f"][0] < 0
    assert d["E"][0] == pytest.approx(2e7)
    # strongly dilative optimised set (Cd + Cp < 0): eps0p + eps_v^p goes below the power floor
    from materials.params import PRESETS

    strain = np.zeros((1, 200, 3, 3))
    a = np.linspace(0, 0.05, 201)[1:]
    strain[0, :, 2, 2] = -a
    strain[0, :, 0, 0] = strain[0, :, 1, 1] = 0.3 * a
    b = StressPointBatch("ime", 1, 100e3, PRESETS["ime", "optimised"], n_sub=4)
    s = b.run_history(strain)
    assert np.isfinite(s).all()
