#!/usr/bin/env python
"""Write the meshes of the boundary value problems and of the verification tests.

Usage::

    python scripts/make_meshes.py [--out assets/meshes] [--only NAME ...]

Every mesh is written as gmsh 4.1 ASCII with named physical groups (read back with
``engine.mesh.load_mesh``).  Units are metres; 2D meshes lie in the z=0 plane and are
made of linear 3-node triangles (frontal-Delaunay, single thread, fixed seed, so the
output is deterministic for a given gmsh version); 3D meshes are structured 8-node
hexahedra (transfinite + recombine).

Each mesh has a physical group "domain" (the surface in 2D, the volume in 3D) and one
physical group per named boundary line (2D) or face (3D), plus point groups where noted.
The element-count ranges below are the ones the unit tests check.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import gmsh

# name -> (min, max) number of domain elements; checked after meshing
EXPECTED = {
    "strip_footing": (530, 580),
    "biaxial": (460, 510),
    "retaining_wall": (300, 345),
    "cavity": (860, 940),
    "ctc": (1024, 1024),
    "ptc": (3456, 3456),
    "lame": (1800, 2200),
    "patch2d": (10, 30),
    "patch3d": (8, 8),
    # coarse meshes of the studies' quick scale (studies/quick.toml)
    "strip_footing_coarse": (100, 140),
    "biaxial_coarse": (60, 110),
    "retaining_wall_coarse": (90, 120),
    "cavity_coarse": (110, 150),
    "ctc_coarse": (16, 16),
    # coarser still: the quick study's FEM-DEM runs fit 30 minutes quasi-statically (studies/quick.toml)
    "strip_footing_quick": (55, 80),
    "biaxial_quick": (40, 60),
    "retaining_wall_quick": (45, 65),
    "cavity_quick": (40, 65),
    "ctc_quick": (2, 2),
}
FAILED: list[str] = []


# ----------------------------------------------------------------------------- helpers
def _start(name: str) -> None:
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.clear()
    gmsh.model.add(name)
    gmsh.option.setNumber("General.NumThreads", 1)
    gmsh.option.setNumber("Mesh.RandomSeed", 1)
    gmsh.option.setNumber("Mesh.Algorithm", 6)  # frontal-Delaunay
    gmsh.option.setNumber("Mesh.ElementOrder", 1)
    gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
    gmsh.option.setNumber("Mesh.Binary", 0)
    gmsh.option.setNumber("Mesh.SaveAll", 0)  # only elements of physical groups
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 1)
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 1)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)


def _group(dim: int, tags, name: str) -> None:
    if not tags:
        raise RuntimeError(f"physical group {name!r}: no entities")
    gmsh.model.addPhysicalGroup(dim, list(tags), name=name)


def _boundary_groups(**tags) -> None:
    """One physical line group per keyword (name=line tag)."""
    for name, tag in tags.items():
        _group(1, [tag], name)


def _polygon(corners, sizes):
    """Closed polygon in z=0 (counter-clockwise corners). Returns (line tags, surface tag)."""
    geo = gmsh.model.geo
    pts = [geo.addPoint(x, y, 0.0, h) for (x, y), h in zip(corners, sizes)]
    n = len(pts)
    lines = [geo.addLine(pts[i], pts[(i + 1) % n]) for i in range(n)]
    loop = geo.addCurveLoop(lines)
    surf = geo.addPlaneSurface([loop])
    return lines, surf


def _count(dim: int) -> int:
    etypes, etags, _ = gmsh.model.mesh.getElements(dim)
    return sum(len(t) for t in etags)


def _finish(out: Path, name: str, dim: int, generate: bool = True) -> tuple[int, int]:
    if generate:
        gmsh.model.mesh.generate(dim)
    n_elem = _count(dim)
    path = out / f"{name}.msh"
    gmsh.write(str(path))
    n_nodes = len(gmsh.model.mesh.getNodes()[0])
    lo, hi = EXPECTED[name]
    status = "ok" if lo <= n_elem <= hi else f"OUT OF RANGE [{lo}, {hi}]"
    print(f"{name:15s} {n_elem:6d} elements {n_nodes:6d} nodes "
          f"{path.stat().st_size / 1024:8.1f} KiB  {status}")
    if status != "ok":
        FAILED.append(name)
    return n_elem, n_nodes


# ----------------------------------------------------------------------------- 2D meshes
def strip_footing(out: Path, name: str = "strip_footing", coarsen: float = 1.0) -> None:
    """4 x 2 m half-domain, rigid footing of half-width 0.3 m at the top-left corner."""
    _start(name)
    W, H, B = 4.0, 2.0, 0.3
    h_far, h_foot = 0.27 * coarsen, 0.073 * coarsen
    # counter-clockwise: (0,0) (W,0) (W,H) (B,H) (0,H)
    lines, surf = _polygon(
        [(0, 0), (W, 0), (W, H), (B, H), (0, H)],
        [h_far, h_far, h_far, h_foot, h_foot],
    )
    gmsh.model.geo.synchronize()
    bottom, right, top, footing, left = lines
    _boundary_groups(footing=footing, top=top, bottom=bottom, left=left, right=right)
    _group(2, [surf], "domain")
    _finish(out, name, 2)


def biaxial(out: Path, name: str = "biaxial", coarsen: float = 1.0) -> None:
    """0.05 m wide, 0.1 m high biaxial specimen."""
    _start(name)
    W, H, h = 0.05, 0.1, 0.0051 * coarsen
    lines, surf = _polygon([(0, 0), (W, 0), (W, H), (0, H)], [h] * 4)
    gmsh.model.geo.synchronize()
    bottom, right, top, left = lines
    _boundary_groups(bottom=bottom, top=top, left=left, right=right)
    _group(2, [surf], "domain")
    _finish(out, name, 2)


def retaining_wall(out: Path, name: str = "retaining_wall", coarsen: float = 1.0) -> None:
    """3.6 x 2.0 m backfill; rigid 1.5 m wall on the right edge above y=0.5."""
    _start(name)
    W, H, y_wall = 3.6, 2.0, 0.5
    h = 0.241 * coarsen
    lines, surf = _polygon([(0, 0), (W, 0), (W, y_wall), (W, H), (0, H)], [h] * 5)
    gmsh.model.geo.synchronize()
    bottom, right_fixed, wall, top, left = lines
    _boundary_groups(wall=wall, right_fixed=right_fixed, bottom=bottom, left=left, top=top)
    _group(2, [surf], "domain")
    _finish(out, name, 2)


def _quarter_annulus(ri: float, ro: float, hi: float, ho: float):
    """Quarter annulus in the first quadrant. Returns dict of curve tags, surface, point tags."""
    geo = gmsh.model.geo
    c = geo.addPoint(0, 0, 0, ho)
    a = geo.addPoint(ri, 0, 0, hi)
    b = geo.addPoint(ro, 0, 0, ho)
    d = geo.addPoint(0, ro, 0, ho)
    e = geo.addPoint(0, ri, 0, hi)
    xaxis = geo.addLine(a, b)
    outer = geo.addCircleArc(b, c, d)
    yaxis = geo.addLine(d, e)
    inner = geo.addCircleArc(e, c, a)
    loop = geo.addCurveLoop([xaxis, outer, yaxis, inner])
    surf = geo.addPlaneSurface([loop])
    geo.remove([(0, c)])  # centre is only a construction point
    curves = dict(xaxis=xaxis, outer=outer, yaxis=yaxis, inner=inner)
    return curves, surf, dict(a=a, b=b, d=d, e=e)


def cavity(out: Path, mesh_name: str = "cavity", coarsen: float = 1.0) -> None:
    """Quarter of a cylindrical cavity: r in [0.008, 0.15], graded finer near the cavity."""
    _start(mesh_name)
    ri, ro = 0.008, 0.15
    k = 0.1127 * coarsen  # element size ~ k * r  (geometric grading)
    curves, surf, pts = _quarter_annulus(ri, ro, k * ri, k * ro)
    gmsh.model.geo.synchronize()
    field = gmsh.model.mesh.field
    f = field.add("MathEval")
    field.setString(f, "F", f"{k}*Sqrt(x*x+y*y)")
    field.setAsBackgroundMesh(f)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    for name in ("inner", "outer", "xaxis", "yaxis"):
        _group(1, [curves[name]], name)
    _group(0, [pts["d"]], "corner")
    _group(2, [surf], "domain")
    _finish(out, mesh_name, 2)


def lame(out: Path) -> None:
    """Thick cylinder (Lame) quarter annulus r in [0.1, 0.2], structured triangles."""
    _start("lame")
    ri, ro = 0.1, 0.2
    n_r, n_t = 20, 50  # elements radially / circumferentially -> 2*n_r*n_t triangles
    curves, surf, _ = _quarter_annulus(ri, ro, 0.01, 0.01)
    geo = gmsh.model.geo
    geo.mesh.setTransfiniteCurve(curves["xaxis"], n_r + 1)
    geo.mesh.setTransfiniteCurve(curves["yaxis"], n_r + 1)
    geo.mesh.setTransfiniteCurve(curves["inner"], n_t + 1)
    geo.mesh.setTransfiniteCurve(curves["outer"], n_t + 1)
    geo.mesh.setTransfiniteSurface(surf, "Alternate")
    geo.synchronize()
    for name in ("inner", "outer", "xaxis", "yaxis"):
        _group(1, [curves[name]], name)
    _group(2, [surf], "domain")
    _finish(out, "lame", 2)


def patch2d(out: Path) -> None:
    """Unit square with a few irregular triangles and interior nodes (patch test)."""
    _start("patch2d")
    h = 0.42
    lines, surf = _polygon([(0, 0), (1, 0), (1, 1), (0, 1)], [h] * 4)
    p = gmsh.model.geo.addPoint(0.43, 0.58, 0.0, h)  # off-centre interior node
    gmsh.model.geo.synchronize()
    gmsh.model.mesh.embed(0, [p], 2, surf)
    bottom, right, top, left = lines
    _boundary_groups(bottom=bottom, top=top, left=left, right=right)
    _group(2, [surf], "domain")
    _finish(out, "patch2d", 2)


# ----------------------------------------------------------------------------- 3D meshes
def _box(name: str, size, n, out: Path, move_centre=None) -> None:
    """Structured hexahedral box [0,Lx]x[0,Ly]x[0,Lz] with nx x ny x nz elements."""
    _start(name)
    Lx, Ly, Lz = size
    occ = gmsh.model.occ
    vol = occ.addBox(0, 0, 0, Lx, Ly, Lz)
    occ.synchronize()
    tol = 1e-4 * min(size)  # OCC bounding boxes carry a small margin
    for _, c in gmsh.model.getEntities(1):
        x0, y0, z0, x1, y1, z1 = gmsh.model.getBoundingBox(1, c)
        ext = (x1 - x0, y1 - y0, z1 - z0)
        axis = max(range(3), key=lambda i: ext[i])
        gmsh.model.mesh.setTransfiniteCurve(c, n[axis] + 1)
    for _, s in gmsh.model.getEntities(2):
        gmsh.model.mesh.setTransfiniteSurface(s)
        gmsh.model.mesh.setRecombine(2, s)
    gmsh.model.mesh.setTransfiniteVolume(vol)
    gmsh.model.mesh.setRecombine(3, vol)

    def face(axis: int, value: float) -> list[int]:
        lo = [-tol, -tol, -tol]
        hi = [Lx + tol, Ly + tol, Lz + tol]
        lo[axis], hi[axis] = value - tol, value + tol
        return [t for _, t in gmsh.model.getEntitiesInBoundingBox(*lo, *hi, dim=2)]

    _group(2, face(2, 0.0), "bottom")
    _group(2, face(2, Lz), "top")
    _group(2, face(0, 0.0), "xmin")
    _group(2, face(0, Lx), "xmax")
    _group(2, face(1, 0.0), "ymin")
    _group(2, face(1, Ly), "ymax")
    _group(3, [vol], "domain")
    if move_centre is None:
        _finish(out, name, 3)
        return
    gmsh.model.mesh.generate(3)
    tags, coords, _ = gmsh.model.mesh.getNodes(3, vol)  # nodes strictly inside the volume
    if len(tags) != 1:
        raise SystemExit(f"{name}: expected one interior node, got {len(tags)}")
    gmsh.model.mesh.setNode(int(tags[0]), list(move_centre), [])
    _finish(out, name, 3, generate=False)


def ctc(out: Path) -> None:
    _box("ctc", (0.05, 0.05, 0.1), (8, 8, 16), out)


def ptc(out: Path) -> None:
    _box("ptc", (0.05, 0.05, 0.1), (12, 12, 24), out)


def patch3d(out: Path) -> None:
    _box("patch3d", (1.0, 1.0, 1.0), (2, 2, 2), out, move_centre=(0.45, 0.55, 0.4))


BUILDERS = {
    "strip_footing_coarse": lambda out: strip_footing(out, "strip_footing_coarse", 2.4),
    "biaxial_coarse": lambda out: biaxial(out, "biaxial_coarse", 2.2),
    "retaining_wall_coarse": lambda out: retaining_wall(out, "retaining_wall_coarse", 2.0),
    "cavity_coarse": lambda out: cavity(out, "cavity_coarse", 2.8),
    "ctc_coarse": lambda out: _box("ctc_coarse", (0.05, 0.05, 0.1), (2, 2, 4), out),
    "strip_footing_quick": lambda out: strip_footing(out, "strip_footing_quick", 3.4),
    "biaxial_quick": lambda out: biaxial(out, "biaxial_quick", 3.5),
    "retaining_wall_quick": lambda out: retaining_wall(out, "retaining_wall_quick", 2.8),
    "cavity_quick": lambda out: cavity(out, "cavity_quick", 5.5),
    "ctc_quick": lambda out: _box("ctc_quick", (0.05, 0.05, 0.1), (1, 1, 2), out),
    "strip_footing": strip_footing,
    "biaxial": biaxial,
    "retaining_wall": retaining_wall,
    "cavity": cavity,
    "ctc": ctc,
    "ptc": ptc,
    "lame": lame,
    "patch2d": patch2d,
    "patch3d": patch3d,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "assets" / "meshes"))
    ap.add_argument("--only", nargs="*", choices=sorted(BUILDERS), help="build only these meshes")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gmsh.initialize(["make_meshes"], readConfigFiles=False)
    try:
        for name in args.only or BUILDERS:
            BUILDERS[name](out)
    finally:
        gmsh.finalize()
    if FAILED:
        print(f"element counts out of range: {', '.join(FAILED)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
