"""Bad packings are refused when loaded (kernels.packing.load_packing, docs/packing.md "Checks at
load"): one line naming the file and the key; ``engine rve`` and ``engine run`` exit with status 2.
Loading only: no DEM steps."""
import itertools
from pathlib import Path

import numpy as np
import pytest

from helpers import engine
from kernels.packing import OVERLAP_TOL, PackingError, load_packing, max_overlap

ROOT = Path(__file__).parents[2]
PACKINGS = ROOT / "assets" / "packings"
DISKS = PACKINGS / "disks64_100kPa.npz"
CASE = ROOT / "cases" / "verification" / "fem_dem_small.toml"


def _write(tmp_path, name="bad.npz", src=DISKS, drop=(), **changes) -> Path:
    """A copy of ``src`` with some arrays replaced (a value None removes the key)."""
    z = {**dict(np.load(src)), **changes}
    z = {k: v for k, v in z.items() if v is not None and k not in drop}
    path = tmp_path / name
    np.savez(path, **z)
    return path


def _refused(path, *parts):
    with pytest.raises(PackingError) as info:
        load_packing(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: key")
    for p in parts:
        assert p in msg, msg
    return msg


def _src(key, src=DISKS):
    return np.load(src)[key].copy()


@pytest.mark.parametrize("name", ["disks64_100kPa.npz", "disks1000_100kPa.npz", "spheres64_100kPa.npz",
                                  "spheres900_100kPa.npz"])
def test_shipped_packings_pass_with_margin(name):
    """The measured largest overlaps (docs/packing.md): 0.029, 0.052, 0.0040, 0.0051 of the smaller radius."""
    p = load_packing(PACKINGS / name)
    ratio, i, j, count = max_overlap(p.cell, p.pos, p.radius)
    assert 0 < ratio < 0.06 and ratio < OVERLAP_TOL / 4 and count == 0 and i != j


@pytest.mark.parametrize("value,text", [(0.0, "1 radii <= 0 (first at particle 5: 0)"),
                                        (-1e-3, "1 radii <= 0 (first at particle 5: -0.001)"),
                                        (np.nan, "1 radii are NaN or inf (first at row 5)")])
def test_bad_radius(tmp_path, value, text):
    r = _src("radius")
    r[5] = value
    _refused(_write(tmp_path, radius=r), "key 'radius'", text)


def test_shapes(tmp_path):
    _refused(_write(tmp_path, radius=_src("radius")[:-1]), "key 'pos'", "64 rows for 63 radii", "must be (63, 2) or (63, 3)")
    _refused(_write(tmp_path, pos=_src("pos")[:, :1]), "key 'pos'", "shape (64, 1)")
    _refused(_write(tmp_path, radius=np.zeros(0)), "key 'radius'", "N >= 1")
    _refused(_write(tmp_path, dim=4), "key 'dim'", "must be 2 or 3")
    _refused(_write(tmp_path, dim=3), "key 'pos'", "shape (64, 2) for dim 3")
    _refused(_write(tmp_path, cell=np.eye(3)[:2]), "key 'cell'", "shape (2, 3); must be (2, 2) or (3, 3)")
    _refused(_write(tmp_path, stress=np.zeros(3)), "key 'stress'", "must be (2, 2)")
    _refused(_write(tmp_path, young=np.ones(2)), "key 'young'", "must be a scalar")
    _refused(_write(tmp_path, damping=1.0), "key 'damping'", "0 <= damping < 1")
    _refused(_write(tmp_path, radius=_src("radius").astype(str)), "key 'radius'", "not numeric")


def test_positions_and_cell(tmp_path):
    pos = _src("pos")
    pos[7, 1] = np.inf
    _refused(_write(tmp_path, pos=pos), "key 'pos'", "1 positions are NaN or inf (first at row 7)")
    cell = _src("cell")
    cell[:, 1] = 2 * cell[:, 0]
    _refused(_write(tmp_path, cell=cell), "key 'cell'", "singular")


def test_overlaps(tmp_path):
    r, pos = _src("radius"), _src("pos")
    pos[3] = pos[7] + [0.5 * r[7], 0.0]                    # particle 3 on top of particle 7
    _refused(_write(tmp_path, pos=pos), "keys 'pos', 'radius'", "particles 3 and 7 overlap by",
             f"at most {OVERLAP_TOL:g}")
    # across the periodic boundary: a particle near a face, another at its image
    cell, pos = _src("cell"), _src("pos")
    pos[3] = pos[7] + cell[:, 0] + [0.2 * r[7], 0.0]
    assert "particles 3 and 7" in _refused(_write(tmp_path, pos=pos), "keys 'pos', 'radius'")
    # radii given as diameters
    _refused(_write(tmp_path, radius=2 * r), "keys 'pos', 'radius'", "is 'radius' a diameter")
    # radii larger than the cell: a particle reaches its own image
    _refused(_write(tmp_path, radius=1000 * r), "keys 'cell', 'radius'", "own periodic image")
    # radii 10 % too large: overlaps up to 0.26 of the smaller radius, refused at the default tolerance,
    # loaded with a stated looser one
    path = _write(tmp_path, "big.npz", radius=1.1 * r)
    _refused(path, "keys 'pos', 'radius'", "overlap by 0.26")
    assert load_packing(path, overlap_tol=0.3).n == 64


def test_max_overlap_matches_all_pairs_and_images():
    """The binned search equals a loop over all pairs and images, in sheared cells too."""
    rng = np.random.default_rng(0)
    for dim, n in ((2, 20), (3, 15), (2, 5), (3, 30)):
        cell = np.eye(dim) + rng.normal(0, 0.3, (dim, dim))
        pos = rng.uniform(-2, 2, (n, dim))
        r = rng.uniform(0.01, 0.12, n)
        s = pos @ np.linalg.inv(cell).T
        x = (s - np.floor(s)) @ cell.T
        ks = np.array(list(itertools.product(range(-3, 4), repeat=dim))) @ cell.T
        best, worst = -np.inf, 0
        for i, j in itertools.combinations(range(n), 2):
            ratio = ((r[i] + r[j] - np.linalg.norm(x[j] - x[i] + ks, axis=1)) / min(r[i], r[j])).max()
            best, worst = max(best, ratio), worst + (ratio > 0.1)
        got = max_overlap(cell, pos, r, tol=0.1, max_pairs=5)
        if best > 0:
            assert got[0] == pytest.approx(best, rel=1e-12) and got[3] == worst
        else:
            assert got[0] <= 0 and got[3] == 0
    p = load_packing(DISKS)
    base = max_overlap(p.cell, p.pos, p.radius)
    skew = max_overlap(p.cell @ np.array([[1, 2], [0, 1]]), p.pos, p.radius)   # same lattice, other basis
    assert skew[:2] == pytest.approx(base[:2], rel=1e-9) and skew[2] == base[2]


def test_contact_arrays(tmp_path):
    _refused(_write(tmp_path, c_fn=_src("c_fn")[:-3]), "key 'c_fn'", "101 rows, but 'c_ids' has 104")
    _refused(_write(tmp_path, c_fs=_src("c_fs")[:, :1]), "key 'c_fs'", "shape (104, 1); must be (M, 2) or (M, 3)")
    _refused(_write(tmp_path, c_normal=_src("c_normal")[:50]), "key 'c_normal'", "50 rows")
    _refused(_write(tmp_path, c_ids=_src("c_ids")[:, :1]), "key 'c_ids'", "must be (M, 2)")
    ids = _src("c_ids")
    ids[4, 1] = 64
    _refused(_write(tmp_path, c_ids=ids), "key 'c_ids'", "first at row 4", "0 <= id < 64")
    ids = _src("c_ids")
    ids[9] = ids[2][::-1]
    _refused(_write(tmp_path, c_ids=ids), "key 'c_ids'", "listed 2 times")
    _refused(_write(tmp_path, c_ids=_src("c_ids") + 0.5), "key 'c_ids'", "non-integer")
    _refused(_write(tmp_path, drop=("c_fs",)), "key 'c_fs'", "missing")
    _refused(_write(tmp_path, drop=("c_ids",)), "key 'c_fn'", "without 'c_ids'")
    _refused(_write(tmp_path, c_normal=2 * _src("c_normal")), "key 'c_normal'", "unit length")
    _refused(_write(tmp_path, c_fn=-_src("c_fn")), "key 'c_fn'", "< 0", "magnitude")
    # no contacts at all (M = 0): loads, to be re-consolidated
    empty = load_packing(_write(tmp_path, c_ids=np.zeros((0, 2), int), c_fn=np.zeros(0), c_fs=np.zeros((0, 2)),
                                c_normal=np.zeros((0, 2))))
    assert empty.contacts["c_ids"].shape == (0, 2)


@pytest.mark.parametrize("src", [DISKS, PACKINGS / "spheres64_100kPa.npz"])
def test_yade_normal_force_vector_is_its_magnitude(tmp_path, src):
    """YADE's normalForce (M, dim) (the force on id2, along c_normal) loads as c_fn = |normalForce|;
    in 2D also as YADE's 3-vectors."""
    p = load_packing(src)
    vec = p.contacts["c_fn"][:, None] * p.contacts["c_normal"]
    variants = [vec] + ([np.c_[vec, np.zeros(len(vec))]] if p.dim == 2 else [])
    for k, v in enumerate(variants):
        q = load_packing(_write(tmp_path, f"yade{k}.npz", src=src, c_fn=v))
        for key in ("c_ids", "c_fs", "c_normal"):
            np.testing.assert_array_equal(q.contacts[key], p.contacts[key])
        np.testing.assert_allclose(q.contacts["c_fn"], p.contacts["c_fn"], rtol=1e-14, atol=0)
        np.testing.assert_array_equal(q.pos, p.pos)
    # the force on id1 (against c_normal) is refused by name
    _refused(_write(tmp_path, src=src, c_fn=-vec), "key 'c_fn'", "YADE's normalForce", "not along c_normal",
             "force on id2")


def test_rve_cli_refuses_bad_packing(tmp_path):
    r = _src("radius")
    r[5] = -r[5]
    bad = _write(tmp_path, radius=r)
    np.save(tmp_path / "inc.npy", np.zeros((1, 2, 2)))
    res = engine("rve", "strain", "--packing", bad, "--strain", tmp_path / "inc.npy", "--out", tmp_path / "o.csv")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[-1] == (f"error: {bad}: key 'radius': 1 radii <= 0 (first at particle 5: {r[5]:g}); "
                         f"radii must be > 0")
    assert "Traceback" not in res.stderr and not (tmp_path / "o.csv").exists()
    res = engine("rve", "triax", "--packing", _write(tmp_path, "f.npz", c_fn=_src("c_fn")[:3]), "--out",
                 tmp_path / "t.csv")
    assert res.returncode == 2 and "key 'c_fn': 3 rows, but 'c_ids' has 104" in res.stderr


def test_run_refuses_bad_packing_naming_the_case_key(tmp_path):
    pos = _src("pos")
    pos[3] = pos[7]
    bad = _write(tmp_path, pos=pos)
    res = engine("run", CASE, "--set", f"material.dem.packing='{bad}'", "--out", tmp_path / "run", "--no-progress")
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {CASE}: material.dem.packing: {bad}: keys 'pos', 'radius': ")
    assert "particles 3 and 7 overlap" in line and "Traceback" not in res.stderr
    assert not (tmp_path / "run").exists()
