"""Mesh assets and the mesh loader (no Taichi)."""
from __future__ import annotations

import math
from pathlib import Path

import meshio
import numpy as np
import pytest

from engine.mesh import Mesh, MeshError, load_mesh

MESHES = Path(__file__).resolve().parents[2] / "assets" / "meshes"

# name: (cell type, (min, max) elements, groups)
ASSETS = {
    "strip_footing": ("triangle", (530, 580), {"footing", "top", "bottom", "left", "right"}),
    "biaxial": ("triangle", (460, 510), {"bottom", "top", "left", "right"}),
    "retaining_wall": ("triangle", (300, 345),
                       {"wall", "right_fixed", "bottom", "left", "top"}),
    "cavity": ("triangle", (860, 940), {"inner", "outer", "xaxis", "yaxis", "corner"}),
    "ctc": ("hexahedron", (1024, 1024), {"bottom", "top", "xmin", "xmax", "ymin", "ymax"}),
    "ptc": ("hexahedron", (3456, 3456), {"bottom", "top", "xmin", "xmax", "ymin", "ymax"}),
    "lame": ("triangle", (1800, 2200), {"inner", "outer", "xaxis", "yaxis"}),
    "patch2d": ("triangle", (10, 30), {"bottom", "top", "left", "right"}),
    "patch3d": ("hexahedron", (8, 8), {"bottom", "top", "xmin", "xmax", "ymin", "ymax"}),
}

_cache: dict[str, Mesh] = {}


def mesh(name: str) -> Mesh:
    if name not in _cache:
        _cache[name] = load_mesh(MESHES / f"{name}.msh")
    return _cache[name]


def tri_areas(m: Mesh) -> np.ndarray:
    x = m.points[m.cells]
    return 0.5 * ((x[:, 1, 0] - x[:, 0, 0]) * (x[:, 2, 1] - x[:, 0, 1])
                  - (x[:, 2, 0] - x[:, 0, 0]) * (x[:, 1, 1] - x[:, 0, 1]))


def hex_volumes(m: Mesh) -> np.ndarray:
    """Exact volume of trilinear hexahedra by 2x2x2 Gauss quadrature."""
    xi = np.array([[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1],
                   [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], dtype=float)
    g = 1.0 / math.sqrt(3.0)
    vol = np.zeros(m.n_elem)
    x = m.points[m.cells]
    for a in (-g, g):
        for b in (-g, g):
            for c in (-g, g):
                q = np.array([a, b, c])
                f = 1.0 + xi * q  # (8, 3)
                dN = np.stack([xi[:, 0] * f[:, 1] * f[:, 2],
                               xi[:, 1] * f[:, 0] * f[:, 2],
                               xi[:, 2] * f[:, 0] * f[:, 1]], axis=1) / 8.0
                vol += np.linalg.det(np.einsum("nai,aj->nij", x, dN))
    return vol


def box_dims(m: Mesh) -> np.ndarray:
    return m.points.max(axis=0) - m.points.min(axis=0)


# ----------------------------------------------------------------------------- assets
@pytest.mark.parametrize("name", sorted(ASSETS))
def test_asset_loads(name):
    cell_type, (lo, hi), groups = ASSETS[name]
    m = mesh(name)
    assert m.cell_type == cell_type
    assert m.dim == (2 if cell_type == "triangle" else 3)
    assert m.points.shape == (m.n_nodes, m.dim) and m.points.dtype == np.float64
    assert m.cells.dtype == np.int64
    assert m.cells.shape[1] == (3 if cell_type == "triangle" else 8)
    assert lo <= m.n_elem <= hi
    assert groups <= set(m.node_sets)
    assert "domain" in m.cell_sets and len(m.cell_sets["domain"]) == m.n_elem
    # every node is used by an element
    assert np.array_equal(np.unique(m.cells), np.arange(m.n_nodes))
    for name_, nodes in m.node_sets.items():
        assert nodes.dtype == np.int64
        assert np.all(np.diff(nodes) > 0), name_
    for name_, f in m.facet_sets.items():
        assert f.shape[1] == (2 if m.dim == 2 else 4)
        assert set(np.unique(f)) <= set(m.node_sets[name_])
        # node set of a facet group is exactly the nodes of its facets
        assert np.array_equal(np.unique(f), m.node_sets[name_])


@pytest.mark.parametrize("name", [n for n, v in ASSETS.items() if v[0] == "triangle"])
def test_triangles_positive(name):
    assert np.all(tri_areas(mesh(name)) > 0)


@pytest.mark.parametrize("name,w,h", [("strip_footing", 4.0, 2.0), ("biaxial", 0.05, 0.1),
                                      ("retaining_wall", 3.6, 2.0), ("patch2d", 1.0, 1.0)])
def test_rectangle_area(name, w, h):
    m = mesh(name)
    assert np.allclose(m.points.min(axis=0), 0.0)
    assert np.allclose(box_dims(m), [w, h])
    assert tri_areas(m).sum() == pytest.approx(w * h, rel=1e-12)


@pytest.mark.parametrize("name,ri,ro", [("cavity", 0.008, 0.15), ("lame", 0.1, 0.2)])
def test_annulus_area(name, ri, ro):
    m = mesh(name)
    exact = math.pi / 4 * (ro**2 - ri**2)
    # polygonal arcs: chords of n segments over a quarter circle cut off at most
    # r^2/2 * (theta - sin theta) per segment
    n_in = len(m.facet_sets["inner"])
    n_out = len(m.facet_sets["outer"])
    cut = lambda r, n: n * 0.5 * r**2 * (math.pi / 2 / n - math.sin(math.pi / 2 / n))  # noqa
    area = tri_areas(m).sum()
    assert area < exact
    assert area == pytest.approx(exact - cut(ro, n_out) + cut(ri, n_in), rel=1e-9)
    r = np.linalg.norm(m.points, axis=1)
    assert np.allclose(r[m.node_sets["inner"]], ri)
    assert np.allclose(r[m.node_sets["outer"]], ro)
    assert np.allclose(m.points[m.node_sets["xaxis"], 1], 0.0)
    assert np.allclose(m.points[m.node_sets["yaxis"], 0], 0.0)
    assert r.min() == pytest.approx(ri) and r.max() == pytest.approx(ro)


def test_cavity_graded_and_corner():
    m = mesh("cavity")
    corner = m.node_sets["corner"]
    assert len(corner) == 1
    assert np.allclose(m.points[corner[0]], [0.0, 0.15])
    assert corner[0] == m.nearest_node([0.0, 0.15, 0.0])
    assert "corner" not in m.facet_sets
    # element size near the cavity much smaller than near the outer boundary
    x = m.points[m.cells]
    c = np.linalg.norm(x.mean(axis=1), axis=1)
    h = np.sqrt(tri_areas(m))
    assert h[c < 0.02].mean() * 5 < h[c > 0.12].mean()


@pytest.mark.parametrize("name", ["ctc", "ptc", "patch3d"])
def test_hex_volume(name):
    m = mesh(name)
    vol = hex_volumes(m)
    assert np.all(vol > 0)
    assert vol.sum() == pytest.approx(np.prod(box_dims(m)), rel=1e-12)


def test_box_dims_and_faces():
    for name in ("ctc", "ptc"):
        m = mesh(name)
        assert np.allclose(box_dims(m), [0.05, 0.05, 0.1])
        assert np.allclose(m.points.min(axis=0), 0.0)
        axis_value = {"xmin": (0, 0.0), "xmax": (0, 0.05), "ymin": (1, 0.0),
                      "ymax": (1, 0.05), "bottom": (2, 0.0), "top": (2, 0.1)}
        for g, (ax, v) in axis_value.items():
            nodes = m.node_sets[g]
            assert np.allclose(m.points[nodes, ax], v), (name, g)
            expected = np.flatnonzero(np.isclose(m.points[:, ax], v))
            assert np.array_equal(nodes, expected), (name, g)
    n = {"ctc": (8, 8, 16), "ptc": (12, 12, 24)}
    for name, (nx, ny, nz) in n.items():
        m = mesh(name)
        assert len(m.facet_sets["bottom"]) == nx * ny
        assert len(m.facet_sets["xmin"]) == ny * nz
        assert m.n_nodes == (nx + 1) * (ny + 1) * (nz + 1)


def test_patch3d_distorted_centre():
    m = mesh("patch3d")
    i = m.nearest_node([0.45, 0.55, 0.4])
    assert np.allclose(m.points[i], [0.45, 0.55, 0.4])
    boundary = set().union(*[set(v) for v in m.node_sets.values()])
    assert i not in boundary and m.n_nodes == 27


def test_patch2d_interior_node():
    m = mesh("patch2d")
    boundary = set().union(*[set(v) for v in m.node_sets.values()])
    assert m.n_nodes - len(boundary) >= 1


def test_strip_footing_groups():
    m = mesh("strip_footing")
    p = m.points
    f = m.node_sets["footing"]
    assert np.allclose(p[f, 1], 2.0) and np.all(p[f, 0] <= 0.3 + 1e-12)
    assert np.isclose(p[f, 0].min(), 0.0) and np.isclose(p[f, 0].max(), 0.3)
    t = m.node_sets["top"]
    assert np.allclose(p[t, 1], 2.0) and np.all(p[t, 0] >= 0.3 - 1e-12)
    assert len(np.intersect1d(f, t)) == 1  # the node at x = 0.3
    assert np.allclose(p[m.node_sets["bottom"], 1], 0.0)
    assert np.allclose(p[m.node_sets["left"], 0], 0.0)
    assert np.allclose(p[m.node_sets["right"], 0], 4.0)
    # the whole top edge is covered by footing + top
    top_edge = m.nodes_in_box([0, 2], [4, 2])
    assert np.array_equal(top_edge, np.union1d(f, t))


def test_retaining_wall_groups():
    m = mesh("retaining_wall")
    p = m.points
    w = m.node_sets["wall"]
    assert np.allclose(p[w, 0], 3.6) and np.all(p[w, 1] >= 0.5 - 1e-12)
    assert np.isclose(p[w, 1].min(), 0.5) and np.isclose(p[w, 1].max(), 2.0)
    r = m.node_sets["right_fixed"]
    assert np.allclose(p[r, 0], 3.6) and np.all(p[r, 1] <= 0.5 + 1e-12)
    _, length = m.facet_normals("wall")
    assert length.sum() == pytest.approx(1.5)


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_facets_point_outward(name):
    m = mesh(name)
    lo, hi = m.points.min(axis=0), m.points.max(axis=0)
    for g, f in m.facet_sets.items():
        n, size = m.facet_normals(g)
        assert np.all(size > 0)
        mid = m.points[f].mean(axis=1)
        if g == "inner":  # normal points towards the centre of the cavity
            assert np.all(np.sum(n * mid, axis=1) < 0)
            continue
        if g == "outer":
            assert np.all(np.sum(n * mid, axis=1) > 0)
            continue
        # straight edges/faces of boxes: the normal is the outward axis direction
        on_lo = np.isclose(mid, lo)
        on_hi = np.isclose(mid, hi)
        expected = on_hi.astype(float) - on_lo.astype(float)
        assert np.allclose(n, expected, atol=1e-9), (name, g)


def test_nodes_in_box_and_scale():
    m = mesh("biaxial")
    assert np.array_equal(m.nodes_in_box([0, 0], [0.05, 0]), m.node_sets["bottom"])
    mm = load_mesh(MESHES / "biaxial.msh", scale=1000.0)
    assert np.allclose(mm.points, 1000.0 * m.points)
    assert np.array_equal(mm.cells, m.cells)


# ----------------------------------------------------------------------------- loader
def _write(tmp_path, name, points, cells, **kw):
    path = tmp_path / name
    meshio.write(str(path), meshio.Mesh(points, cells, **kw))
    return path


def test_clockwise_triangles_reoriented(tmp_path):
    pts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=float)
    cw = np.array([[0, 2, 1], [0, 3, 2]])  # both clockwise
    path = _write(tmp_path, "cw.vtu", pts, [("triangle", cw)])
    m = load_mesh(path)
    assert m.dim == 2 and m.points.shape == (4, 2)
    assert np.all(tri_areas(m) > 0)
    assert tri_areas(m).sum() == pytest.approx(1.0)
    # same triangles, only the orientation changed
    assert {frozenset(c) for c in m.cells.tolist()} == {frozenset(c) for c in cw.tolist()}


def test_inverted_hexahedron_reoriented(tmp_path):
    pts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                    [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=float)
    inverted = np.array([[4, 5, 6, 7, 0, 1, 2, 3]])
    m = load_mesh(_write(tmp_path, "inv.vtu", pts, [("hexahedron", inverted)]))
    assert hex_volumes(m)[0] == pytest.approx(1.0)


def test_gmsh22_and_point_groups(tmp_path):
    """A gmsh 2.2 file (groups come from field_data + gmsh:physical) with a point group."""
    pts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=float)
    cells = [("vertex", np.array([[2]])), ("line", np.array([[0, 1]])),
             ("triangle", np.array([[0, 1, 2], [0, 2, 3]]))]
    phys = [np.array([3]), np.array([1]), np.array([2, 2])]
    path = tmp_path / "g22.msh"
    meshio.write(str(path), meshio.Mesh(
        pts, cells, cell_data={"gmsh:physical": phys, "gmsh:geometrical": phys},
        field_data={"bottom": np.array([1, 1]), "domain": np.array([2, 2]),
                    "corner": np.array([3, 0])}),
        file_format="gmsh22", binary=False)
    m = load_mesh(path)
    assert np.array_equal(m.node_sets["bottom"], [0, 1])
    assert m.facet_sets["bottom"].tolist() == [[0, 1]]
    assert np.array_equal(m.node_sets["corner"], [2])
    assert "corner" not in m.facet_sets
    assert len(m.cell_sets["domain"]) == 2


def test_missing_file(tmp_path):
    path = tmp_path / "nope.msh"
    with pytest.raises(MeshError, match="nope.msh"):
        load_mesh(path)


def test_unreadable_file(tmp_path):
    path = tmp_path / "garbage.msh"
    path.write_text("this is not a mesh\n")
    with pytest.raises(MeshError, match="garbage.msh"):
        load_mesh(path)


def test_quadratic_triangles_rejected(tmp_path):
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.5, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0]],
                   dtype=float)
    path = _write(tmp_path, "quad6.vtu", pts, [("triangle6", np.array([[0, 1, 2, 3, 4, 5]]))])
    with pytest.raises(MeshError, match=r"quad6\.vtu.*triangle6.*supported"):
        load_mesh(path)


def test_mixed_and_tetra_rejected(tmp_path):
    pts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]], dtype=float)
    path = _write(tmp_path, "mixed.vtu", pts,
                  [("quad", np.array([[0, 1, 2, 3]])), ("triangle", np.array([[1, 4, 2]]))])
    with pytest.raises(MeshError, match=r"mixed\.vtu.*quad.*triangle"):
        load_mesh(path)
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    path = _write(tmp_path, "tet.vtu", pts, [("tetra", np.array([[0, 1, 2, 3]]))])
    with pytest.raises(MeshError, match=r"tet\.vtu.*tetra.*hexahedron"):
        load_mesh(path)


def test_error_is_one_line_value_error(tmp_path):
    with pytest.raises(ValueError) as info:
        load_mesh(tmp_path / "missing.msh")
    assert "\n" not in str(info.value)
