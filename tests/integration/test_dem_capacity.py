"""A neighbour-list capacity exceeded by a FEM-DEM run is a one-line error naming the case key."""
from pathlib import Path

from helpers import engine

SMALL = Path(__file__).resolve().parents[2] / "cases" / "verification" / "fem_dem_small.toml"


def test_a_capacity_too_small_for_the_packing_is_refused_at_set_up(tmp_path):
    r = engine("run", SMALL, "--set", "material.dem.max_contacts_per_particle=3", "--set", "run.steps=1",
               "--out", tmp_path / "run", "--no-progress")
    assert r.returncode == 2
    assert "material.dem.max_contacts_per_particle: neighbour list overflow" in r.stderr
    assert "Traceback" not in r.stderr


def test_an_overflow_during_the_run_stops_it_with_the_step_and_keeps_the_outputs(tmp_path, monkeypatch):
    from kernels.periodic_cell import CapacityError
    from kernels.rve_batch import RVEBatch

    original = RVEBatch.update
    calls = []

    def overflow_at_third_step(self, deps, stress):
        calls.append(1)
        if len(calls) == 3:
            raise CapacityError("neighbour list overflow (5 entries dropped); increase max_contacts_per_particle (now 16)")
        return original(self, deps, stress)
    monkeypatch.setattr(RVEBatch, "update", overflow_at_third_step)
    r = engine("run", SMALL, "--set", "run.steps=4", "--out", tmp_path / "run", "--no-progress")
    assert r.returncode == 3
    assert "step 3: neighbour list overflow (5 entries dropped)" in r.stderr
    assert "material.dem.max_contacts_per_particle" in r.stderr and "Traceback" not in r.stderr
    rows = (tmp_path / "run" / "curves.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1", "2"]     # the initial state and the good steps
