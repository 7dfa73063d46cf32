"""The material registry: every model once, one interface, and a new model by one registration."""
from pathlib import Path

import numpy as np
import pytest

from engine.case import CaseError, load_case
from engine.driver import run
from kernels import registry
from kernels.material import MaterialBatch
from materials.elastic import lame

import toy_material

CASES = Path(__file__).parents[2] / "cases" / "verification"


def test_every_model_once_with_its_schema():
    assert registry.names() == ("csuh", "mcc", "ime", "elastic", "dem")
    assert registry.names(differentiable=True) == ("csuh", "mcc", "ime")
    assert "dem" not in registry.names(point_tests=True)
    for name in registry.names():
        spec = registry.get(name)
        assert spec.name == name == spec.schema.model
        assert set(spec.stress_diagnostics) - set(spec.diagnostics) <= {"q_tilde", "px0", "pc"}
        assert all(lo <= spec.schema.defaults[k] <= hi for k, (lo, hi) in spec.schema.bounds.items())
    with pytest.raises(ValueError, match="model must be one of csuh, mcc, ime, elastic, dem, got 'granite'"):
        registry.get("granite")


@pytest.mark.parametrize("model", ["csuh", "mcc", "ime", "elastic"])
def test_point_batches_have_the_interface(ti_runtime, model):
    batch = registry.point_batch(model, 3, 100e3)
    assert isinstance(batch, MaterialBatch)
    np.testing.assert_array_equal(batch.initial_stress(), np.broadcast_to(-100e3 * np.eye(3), (3, 3, 3)))
    assert batch.check(1) == "" and batch.wave_modulus() > 0
    assert set(batch.diagnostics(batch.initial_stress())) == set(registry.get(model).diagnostics)


def test_a_new_model_is_one_registration(ti_runtime, tmp_path):
    """A toy model (tests/unit/toy_material.py) registered once runs the patch case and gives the
    elastic model's curves for the same K and G."""
    registry.register(toy_material.SPEC)
    try:
        lam, mu = lame(1e6, 0.25)
        text = (CASES / "patch2d.toml").read_text().replace('file = "../../assets', f'file = "{CASES.parents[1]}/assets')
        toml = tmp_path / "toy.toml"
        toml.write_text(text.replace('model = "elastic"', 'model = "toy_kg"').replace(
            "E = 1e6\nnu = 0.25", f"K = {lam + 2 * mu / 3!r}\nG = {mu!r}"))
        common = ["run.steps=150", "output.every=50"]
        with pytest.raises(CaseError, match="material.E is not a key of model toy_kg"):
            load_case(toml, common + ["material.E=1e6"])
        a = run(load_case(toml, common), tmp_path / "toy", progress=False)
        b = run(load_case(CASES / "patch2d.toml", common), tmp_path / "elastic", progress=False)
        assert a["case"]["material"]["params"]["G"] == mu and a["steps_done"] == 150
        ca = np.loadtxt(tmp_path / "toy" / "curves.csv", delimiter=",", skiprows=1)
        cb = np.loadtxt(tmp_path / "elastic" / "curves.csv", delimiter=",", skiprows=1)
        assert np.abs(cb[-1, 2]) > 1e-4
        np.testing.assert_allclose(ca, cb, rtol=1e-9, atol=1e-15)
    finally:
        registry.unregister("toy_kg")
