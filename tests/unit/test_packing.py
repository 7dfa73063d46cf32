"""Packing files (docs/packing.md), generation and consolidation."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kernels.packing import Packing, PackingError, generate_packing, load_packing

PACKINGS = Path(__file__).resolve().parents[2] / "assets" / "packings"


def test_save_load_roundtrip(tmp_path):
    p = load_packing(PACKINGS / "disks64_100kPa.npz")
    p.save(tmp_path / "a.npz")
    q = load_packing(tmp_path / "a.npz")
    np.testing.assert_array_equal(p.pos, q.pos)
    np.testing.assert_array_equal(p.contacts["c_fs"], q.contacts["c_fs"])
    assert (q.young, q.poisson, q.friction, q.density, q.damping) == (p.young, p.poisson, p.friction,
                                                                        p.density, p.damping)


@pytest.mark.parametrize("name,dim,n,dmin,dmax", [
    ("disks64_100kPa.npz", 2, 64, 6e-3, 12e-3), ("spheres64_100kPa.npz", 3, 64, 5e-3, 9e-3),
    ("disks1000_100kPa.npz", 2, 1000, 6e-3, 12e-3), ("spheres900_100kPa.npz", 3, 900, 5e-3, 9e-3)])
def test_shipped_packings(name, dim, n, dmin, dmax):
    p = load_packing(PACKINGS / name)
    assert p.dim == dim and p.n == n
    assert dmin / 2 <= p.radius.min() and p.radius.max() <= dmax / 2
    np.testing.assert_allclose(np.diag(p.stress), -100e3, rtol=0.02)
    assert len(p.contacts["c_ids"]) > n


def test_generation_is_seeded():
    a = generate_packing(2, 30, 6e-3, 12e-3, seed=3)
    b = generate_packing(2, 30, 6e-3, 12e-3, seed=3)
    c = generate_packing(2, 30, 6e-3, 12e-3, seed=4)
    np.testing.assert_array_equal(a.pos, b.pos)
    assert not np.array_equal(a.pos, c.pos)
    assert 3e-3 <= a.radius.min() and a.radius.max() <= 6e-3


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(PackingError, match="not found"):
        load_packing(tmp_path / "none.npz")
    np.savez(tmp_path / "bad.npz", cell=np.eye(2), pos=np.zeros((3, 2)))
    with pytest.raises(PackingError, match="lacks keys"):
        load_packing(tmp_path / "bad.npz")


def test_yade_keys_without_contacts_are_reconsolidated(ti_runtime, tmp_path):
    """A YADE-written file (3D positions, no contact state) loads and is re-consolidated."""
    from kernels.rve_batch import RVEBatch

    p = load_packing(PACKINGS / "disks64_100kPa.npz")
    pos3 = np.c_[p.pos, np.full(p.n, 0.05)]   # YADE writes 3-vectors
    np.savez(tmp_path / "yade.npz", dim=2, cell=p.cell, pos=pos3, radius=p.radius, young=p.young,
             poisson=p.poisson, friction=p.friction, density=p.density, damping=p.damping,
             stress=p.stress)
    q = load_packing(tmp_path / "yade.npz")
    assert q.contacts is None and q.pos.shape == (p.n, 2)
    batch = RVEBatch([q], 1, 2, steps_per_increment=10, tol=0.02, cap=10)
    assert "no contact state, re-consolidated to p0 = 9980" in batch.notes[0]  # its own stress
    np.testing.assert_allclose(np.diag(batch.initial_stress()[0])[:2], -100e3, rtol=0.02)
    assert isinstance(replace(q), Packing)
