"""Finite element meshes: reading, checking and naming node/facet groups.

``load_mesh`` reads any format meshio reads (gmsh .msh 2.2/4.x, VTK/VTU, XDMF, ...) and
returns a :class:`Mesh` with a single element type:

- 2D: linear 3-node triangles (``cell_type == "triangle"``), points in the z=0 plane, z dropped;
- 3D: trilinear 8-node hexahedra (``cell_type == "hexahedron"``).

Node order is VTK/meshio.  After loading:

- every triangle is counter-clockwise (positive area), every hexahedron has a positive
  Jacobian at its centre (inverted ones are re-ordered, degenerate ones are an error);
- nodes not used by any element are dropped and indices renumbered;
- named groups (gmsh physical groups, meshio ``cell_sets``) become
  ``node_sets`` (sorted unique node indices; every line/surface/point group),
  ``facet_sets`` (line segments in 2D, 4-node quads in 3D) and ``cell_sets`` (element
  indices of domain-dimension groups such as ``"domain"``);
- facets that lie on the domain boundary are oriented outward: in 2D the domain is on
  the left of ``a -> b`` so the outward normal of a segment ``(a, b)`` is
  ``(y_b - y_a, -(x_b - x_a))``; in 3D the right-hand normal of the quad
  ``(a, b, c, d)`` (``(x_c - x_a) x (x_d - x_b)``) points out of the domain.

This is the only module of the package that reads meshes through meshio.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Mesh", "MeshError", "load_mesh"]

SUPPORTED = {"triangle": 2, "hexahedron": 3}
_FACET_TYPE = {"triangle": "line", "hexahedron": "quad"}
_SUPPORTED_TEXT = "supported: 'triangle' (2D, 3 nodes) or 'hexahedron' (3D, 8 nodes), one type per mesh"

# element faces with outward orientation (VTK node order)
_TRI_EDGES = np.array([[0, 1], [1, 2], [2, 0]])
_HEX_FACES = np.array(
    [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]]
)
# reference coordinates of the hexahedron nodes (VTK order)
_HEX_XI = np.array(
    [[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1],
     [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], dtype=float
)


class MeshError(ValueError):
    """A mesh file that cannot be used (missing, unreadable, unsupported elements, ...)."""


@dataclass
class Mesh:
    points: np.ndarray  # (n_nodes, dim) float64, metres
    cells: np.ndarray  # (n_elem, nodes_per_elem) int64, VTK/meshio node order
    cell_type: str  # "triangle" or "hexahedron"
    node_sets: dict[str, np.ndarray]  # name -> sorted unique node indices
    facet_sets: dict[str, np.ndarray]  # name -> (n, 2) segments (2D) or (n, 4) quads (3D)
    dim: int
    path: str
    cell_sets: dict[str, np.ndarray] = field(default_factory=dict)  # name -> element indices

    @property
    def n_nodes(self) -> int:
        return int(self.points.shape[0])

    @property
    def n_elem(self) -> int:
        return int(self.cells.shape[0])

    @property
    def nodes_per_elem(self) -> int:
        return int(self.cells.shape[1])

    def _coords(self, xyz, what: str) -> np.ndarray:
        a = np.asarray(xyz, dtype=float).ravel()
        if a.size < self.dim:
            raise ValueError(f"{what}: need {self.dim} coordinates, got {a.size}")
        return a[: self.dim]

    def nodes_in_box(self, lo, hi, tol: float = 1e-9) -> np.ndarray:
        """Sorted indices of nodes with lo - tol <= x <= hi + tol in every direction."""
        lo = self._coords(lo, "lo")
        hi = self._coords(hi, "hi")
        inside = np.all((self.points >= lo - tol) & (self.points <= hi + tol), axis=1)
        return np.flatnonzero(inside).astype(np.int64)

    def nearest_node(self, xyz) -> int:
        """Index of the node closest to ``xyz`` (extra coordinates beyond ``dim`` ignored)."""
        x = self._coords(xyz, "xyz")
        return int(np.argmin(np.sum((self.points - x) ** 2, axis=1)))

    def facet_normals(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Unit outward normals and sizes (length in 2D, area in 3D) of a facet group."""
        f = self.facet_sets[name]
        x = self.points[f]
        if self.dim == 2:
            t = x[:, 1] - x[:, 0]
            n = np.stack([t[:, 1], -t[:, 0]], axis=1)
        else:
            n = 0.5 * np.cross(x[:, 2] - x[:, 0], x[:, 3] - x[:, 1])
        size = np.linalg.norm(n, axis=1)
        return n / size[:, None], size

    def summary(self) -> str:
        groups = ", ".join(sorted(self.node_sets))
        return (f"{Path(self.path).name}: {self.n_elem} {self.cell_type} elements, "
                f"{self.n_nodes} nodes, {self.dim}D; groups: {groups}")


# ----------------------------------------------------------------------------- reading
def _topo_dim(cell_type: str) -> int:
    try:
        from meshio._mesh import topological_dimension  # noqa: PLC0415

        return int(topological_dimension[cell_type])
    except Exception:
        pass
    if cell_type == "vertex":
        return 0
    for prefix, d in (("line", 1), ("triangle", 2), ("quad", 2), ("polygon", 2),
                      ("tetra", 3), ("hexahedron", 3), ("wedge", 3), ("pyramid", 3)):
        if cell_type.startswith(prefix):
            return d
    return -1


def _named_blocks(m, path: str) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Group name -> list of (block index, element indices within the block)."""
    out: dict[str, list[tuple[int, np.ndarray]]] = {}
    for name, per_block in (m.cell_sets or {}).items():
        if name.startswith("gmsh:"):
            continue
        items = []
        for k, idx in enumerate(per_block):
            if idx is None:
                continue
            idx = np.asarray(idx, dtype=np.int64).ravel()
            if idx.size:
                items.append((k, idx))
        out[name] = items
    # gmsh 2.2 files: meshio gives field_data {name: [tag, dim]} + "gmsh:physical" cell data
    phys = (m.cell_data or {}).get("gmsh:physical")
    if phys is not None:
        for name, (tag, gdim) in ((n, v[:2]) for n, v in (m.field_data or {}).items()):
            if name in out and out[name]:
                continue
            items = []
            for k, block in enumerate(m.cells):
                if _topo_dim(block.type) != int(gdim):
                    continue
                idx = np.flatnonzero(np.asarray(phys[k]) == int(tag))
                if idx.size:
                    items.append((k, idx))
            out[name] = items
    return out


def _orient_triangles(points: np.ndarray, cells: np.ndarray, path: str) -> np.ndarray:
    x = points[cells]
    area2 = ((x[:, 1, 0] - x[:, 0, 0]) * (x[:, 2, 1] - x[:, 0, 1])
             - (x[:, 2, 0] - x[:, 0, 0]) * (x[:, 1, 1] - x[:, 0, 1]))
    scale = np.max(np.ptp(points, axis=0)) ** 2 if points.size else 1.0
    bad = np.abs(area2) <= 1e-14 * scale
    if np.any(bad):
        raise MeshError(f"{path}: {int(bad.sum())} degenerate (zero-area) triangles, "
                        f"first is element {int(np.flatnonzero(bad)[0])}")
    neg = area2 < 0
    if np.any(neg):
        cells = cells.copy()
        cells[neg] = cells[neg][:, [0, 2, 1]]
    return cells


def _hex_centre_detj(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    x = points[cells]  # (n, 8, 3)
    jac = np.einsum("nai,aj->nij", x, _HEX_XI / 8.0)  # dx_i/dxi_j at the centre
    return np.linalg.det(jac)


def _orient_hexahedra(points: np.ndarray, cells: np.ndarray, path: str) -> np.ndarray:
    det = _hex_centre_detj(points, cells)
    scale = np.max(np.ptp(points, axis=0)) ** 3 if points.size else 1.0
    bad = np.abs(det) <= 1e-14 * scale
    if np.any(bad):
        raise MeshError(f"{path}: {int(bad.sum())} degenerate hexahedra (zero Jacobian at the "
                        f"centre), first is element {int(np.flatnonzero(bad)[0])}")
    neg = det < 0
    if np.any(neg):
        cells = cells.copy()
        cells[neg] = cells[neg][:, [4, 5, 6, 7, 0, 1, 2, 3]]  # mirror in zeta
    return cells


def _orient_facets(cells: np.ndarray, facets: np.ndarray, cell_type: str) -> np.ndarray:
    """Give facets that lie on element faces the outward orientation of that face."""
    if facets.size == 0:
        return facets
    local = _TRI_EDGES if cell_type == "triangle" else _HEX_FACES
    faces = cells[:, local].reshape(-1, local.shape[1])  # oriented outward of their element
    keys = np.sort(faces, axis=1)
    fkeys = np.sort(facets, axis=1)
    _, first, inverse = np.unique(
        np.concatenate([keys, fkeys]), axis=0, return_index=True, return_inverse=True
    )
    inverse = inverse.ravel()
    match = first[inverse[len(keys):]]  # index of first occurrence for each facet
    on_elem = match < len(keys)
    out = facets.copy()
    out[on_elem] = faces[match[on_elem]]
    return out


def _read(p: Path):
    """Read ``p`` with meshio, its console chatter captured; any failure is a MeshError."""
    spath = str(p)
    if not p.is_file():
        raise MeshError(f"{spath}: mesh file not found")
    try:
        import meshio  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - meshio is a dependency
        raise MeshError(f"{spath}: meshio is not installed ({exc})") from exc
    chatter = io.StringIO()
    try:
        # meshio prints to stdout/stderr and calls sys.exit(1) when no reader fits
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter), \
                contextlib.redirect_stderr(chatter):
            warnings.simplefilter("ignore")
            return meshio.read(spath)
    except (Exception, SystemExit) as exc:
        text = " ".join(str(exc).split()) if not isinstance(exc, SystemExit) else ""
        if not text:
            text = " ".join(chatter.getvalue().split())
        text = text[:300]
        raise MeshError(f"{spath}: meshio cannot read it ({type(exc).__name__}: {text})") from exc


def _domain_type(m, spath: str) -> tuple[str, int]:
    """The single supported element type of highest topological dimension, and its dimension."""
    found = sorted({b.type for b in m.cells})
    if not found:
        raise MeshError(f"{spath}: no cells found; {_SUPPORTED_TEXT}")
    top = max(_topo_dim(t) for t in found)
    domain_types = sorted({b.type for b in m.cells if _topo_dim(b.type) == top})
    if len(domain_types) != 1 or domain_types[0] not in SUPPORTED:
        raise MeshError(f"{spath}: cell types {found}; {_SUPPORTED_TEXT}")
    cell_type = domain_types[0]
    allowed = {cell_type, _FACET_TYPE[cell_type], "vertex", "line"}
    if not set(found) <= allowed:
        raise MeshError(f"{spath}: cell types {found}; {_SUPPORTED_TEXT} "
                        f"(with {_FACET_TYPE[cell_type]!r} boundary facets and 'vertex' points)")
    return cell_type, SUPPORTED[cell_type]


def _points(m, dim: int, spath: str, scale: float) -> np.ndarray:
    """Node coordinates (n, dim) float64 in metres: z dropped in 2D (must be 0), times ``scale``."""
    pts = np.asarray(m.points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise MeshError(f"{spath}: points have shape {pts.shape}")
    if dim == 2:
        if pts.shape[1] == 3:
            if not np.all(pts[:, 2] == 0.0):
                raise MeshError(f"{spath}: triangle mesh must lie in the z=0 plane "
                                f"(|z| up to {np.max(np.abs(pts[:, 2])):.3g})")
            pts = pts[:, :2]
    elif pts.shape[1] != 3:
        raise MeshError(f"{spath}: hexahedron mesh needs 3D points, got {pts.shape[1]} columns")
    return np.ascontiguousarray(pts * float(scale))


def _domain_cells(blocks: list[np.ndarray], types: list[str], cell_type: str,
                  spath: str) -> tuple[np.ndarray, dict[int, int]]:
    """Elements of all ``cell_type`` blocks in block order, and each such block's first index."""
    dom_blocks = [k for k, t in enumerate(types) if t == cell_type]
    offsets = {}
    start = 0
    for k in dom_blocks:
        offsets[k] = start
        start += len(blocks[k])
    cells = np.concatenate([blocks[k] for k in dom_blocks], axis=0)
    if len(cells) == 0:
        raise MeshError(f"{spath}: no {cell_type} cells")
    return cells, offsets


def _drop_unused(pts: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop nodes no element uses: new points, renumbered cells, old -> new index (-1: dropped)."""
    used = np.unique(cells)
    remap = np.full(len(pts), -1, dtype=np.int64)
    remap[used] = np.arange(len(used), dtype=np.int64)
    return pts[used], remap[cells], remap


def _orient_cells(pts: np.ndarray, cells: np.ndarray, cell_type: str, spath: str) -> np.ndarray:
    """Positive-area triangles or positive-Jacobian hexahedra (degenerate ones are an error)."""
    if cell_type == "triangle":
        return _orient_triangles(pts, cells, spath)
    return _orient_hexahedra(pts, cells, spath)


def _group_connectivity(conn: np.ndarray, name: str, cell_type: str, spath: str) -> np.ndarray:
    """Renumbered group entities without those that use dropped nodes (warned about)."""
    if np.any(conn < 0):
        # stacklevel: this function, _group_sets, load_mesh, then load_mesh's caller
        warnings.warn(f"{spath}: group {name!r} has nodes outside the {cell_type} "
                      "elements; they are ignored", stacklevel=4)
        keep = np.all(conn >= 0, axis=1)
        conn = conn[keep]
    return conn


def _group_sets(m, spath: str, blocks: list[np.ndarray], types: list[str], cell_type: str,
                offsets: dict[int, int], remap: np.ndarray, cells: np.ndarray) -> tuple[dict, dict, dict]:
    """Named groups as ``node_sets``, ``facet_sets`` (outward oriented) and ``cell_sets``."""
    facet_type = _FACET_TYPE[cell_type]
    node_sets: dict[str, np.ndarray] = {}
    facet_sets: dict[str, np.ndarray] = {}
    cell_sets: dict[str, np.ndarray] = {}
    for name, items in _named_blocks(m, spath).items():
        nodes, facets, elems = [], [], []
        for k, idx in items:
            t = types[k]
            if t == cell_type:
                elems.append(offsets[k] + idx)
                continue
            conn = _group_connectivity(remap[blocks[k][idx]], name, cell_type, spath)
            nodes.append(conn.ravel())
            if t == facet_type:
                facets.append(conn)
        if elems:
            cell_sets[name] = np.unique(np.concatenate(elems)).astype(np.int64)
        if nodes:
            node_sets[name] = np.unique(np.concatenate(nodes)).astype(np.int64)
        if facets:
            f = np.concatenate(facets, axis=0).astype(np.int64)
            facet_sets[name] = _orient_facets(cells, f, cell_type)
    return node_sets, facet_sets, cell_sets


def load_mesh(path, scale: float = 1.0) -> Mesh:
    """Read a mesh file; see the module docstring for what is checked and normalised.

    ``scale`` multiplies the coordinates (e.g. 1e-3 for a mesh drawn in millimetres).
    """
    p = Path(path)
    spath = str(p)
    m = _read(p)
    cell_type, dim = _domain_type(m, spath)
    pts = _points(m, dim, spath, scale)
    blocks = [np.asarray(b.data, dtype=np.int64) for b in m.cells]
    types = [b.type for b in m.cells]
    cells, offsets = _domain_cells(blocks, types, cell_type, spath)
    pts, cells, remap = _drop_unused(pts, cells)
    cells = _orient_cells(pts, cells, cell_type, spath)
    node_sets, facet_sets, cell_sets = _group_sets(m, spath, blocks, types, cell_type,
                                                   offsets, remap, cells)
    return Mesh(
        points=pts,
        cells=np.ascontiguousarray(cells, dtype=np.int64),
        cell_type=cell_type,
        node_sets=node_sets,
        facet_sets=facet_sets,
        dim=dim,
        path=spath,
        cell_sets=cell_sets,
    )
