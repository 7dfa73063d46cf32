"""tests/backend_skips.py: every name names a test that exists, and the conditions select as documented."""
import ast
from pathlib import Path

import pytest

from backend_skips import SKIPS, conditions, reason_for

ROOT = Path(__file__).resolve().parents[2]


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


@pytest.mark.parametrize("skip", SKIPS, ids=[s.name for s in SKIPS])
def test_each_name_names_a_test(skip):
    file, _, test = skip.name.partition("::")
    assert (ROOT / file).is_file(), f"{skip.name}: no file {file}"
    assert skip.when in ("vulkan", "gpu", "f32") and skip.reason
    func = test.split("[")[0]
    if func != "*":
        assert func in _tests_in(ROOT / file), f"{skip.name}: no test {func} in {file}"


def test_conditions_and_matching():
    assert conditions("cpu", "f64") == set()
    assert conditions("cpu", "f32") == {"f32"}
    assert conditions("cuda", "f64") == {"gpu"}
    assert conditions("vulkan", "f32") == {"vulkan", "gpu", "f32"}
    flip = "tests/unit/test_cell_flip.py::test_flip_is_invisible[2]"
    assert "Vulkan cannot" in reason_for(flip, {"vulkan"})
    assert reason_for(flip, {"gpu", "f32"}) is None                          # CUDA runs f64 tests
    batched = "tests/unit/test_dem_rve.py::test_batched_cells_equal_single_cell[2-%s]"
    assert reason_for(batched % "f64", {"vulkan"}) and reason_for(batched % "f32", {"vulkan"}) is None
    assert reason_for("tests/unit/test_mcc.py::test_mcc_isotropic_bulk_modulus", {"gpu"}) is None
    assert "round-off" in reason_for("tests/unit/test_mcc.py::test_mcc_isotropic_bulk_modulus", {"f32"})
