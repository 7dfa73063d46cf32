"""Boundary conditions, loads and curve weights of a case on its mesh (numpy, set-up only).

Each ``[[bc]]`` entry is resolved once into a :class:`Prescribed` (node indices, components,
nodal velocity, end time); :func:`boundary_at` builds the FEM's prescribed-velocity arrays for a
time from those, and :class:`BoundarySwitch` switches entries with an ``until`` time off mid-step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.case import COMPONENTS, Case, CaseError
from engine.mesh import Mesh
from kernels.fem import ExplicitFEM


@dataclass(frozen=True)
class Prescribed:
    """One resolved ``[[bc]]`` entry: at time t its nodes get velocity ``(on * scale) * velocity``
    (m/s; times ``gradient.T`` when it has one) on the components ``write``, with ``on`` 1 before
    ``until`` (s) and 0 after; the components ``fix`` are held."""
    nodes: np.ndarray          # (n,) node indices
    fix: np.ndarray            # (dim,) bool: components held
    write: np.ndarray          # (dim,) bool: components whose velocity the entry sets
    scale: float               # m/s per unit of ``velocity`` (1 unless radial)
    velocity: np.ndarray       # (n, dim): m/s, or m (position from the centre) with a gradient
    until: float | None        # s, None = the whole run
    gradient: np.ndarray | None = None     # (dim, dim) velocity gradient, 1/s


def _nodes(case: Case, mesh: Mesh, where: str, nodes, at) -> np.ndarray:
    """Node indices of a group name, a tuple of group names, or the node at a point."""
    if nodes is not None:
        names = (nodes,) if isinstance(nodes, str) else nodes
        sets = []
        for name in names:
            if name in mesh.node_sets:
                sets.append(mesh.node_sets[name])
            elif name in mesh.cell_sets:                        # every node of a group of elements
                sets.append(np.unique(mesh.cells[mesh.cell_sets[name]]))
            else:
                raise CaseError(f"{case.where(where + '.nodes')} = {name!r} is not a group of {mesh.path} "
                                f"(allowed: {', '.join(sorted(set(mesh.node_sets) | set(mesh.cell_sets)))})")
        return np.unique(np.concatenate(sets))
    if len(at) < mesh.dim:
        raise CaseError(f"{case.where(where + '.at')} needs {mesh.dim} coordinates, got {len(at)}")
    i = mesh.nearest_node(at[: mesh.dim])
    size = np.ptp(mesh.points, axis=0).max()
    if np.linalg.norm(mesh.points[i] - np.asarray(at[: mesh.dim])) > 1e-3 * size:
        raise CaseError(f"{case.where(where + '.at')} = {list(at)}: no mesh node there "
                        f"(nearest {mesh.points[i].tolist()})")
    return np.array([i])


def _direction(mesh: Mesh, nodes: np.ndarray, component: str, center=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Unit vectors (len(nodes), dim) of a component name; 'radial' is in the xy plane from ``center``."""
    d = np.zeros((len(nodes), mesh.dim))
    if component == "radial":
        r = mesh.points[nodes, :2] - np.asarray(center[:2])
        norm = np.linalg.norm(r, axis=1)
        norm[norm == 0] = 1.0
        d[:, :2] = r / norm[:, None]
    else:
        d[:, COMPONENTS.index(component)] = 1.0
    return d


def resolve_bcs(case: Case, mesh: Mesh) -> list[Prescribed]:
    """The ``[[bc]]`` entries of ``case`` on ``mesh``, in order (later entries win)."""
    out = []
    for bc in case.bcs:
        nodes = _nodes(case, mesh, bc.where, bc.nodes, bc.at)
        every = np.ones(mesh.dim, dtype=bool)
        if bc.radial_velocity is not None:
            fix = np.arange(mesh.dim) < 2
            out.append(Prescribed(nodes, fix, every, bc.radial_velocity,
                                  _direction(mesh, nodes, "radial", bc.center), bc.until))
            continue
        if bc.velocity_gradient is not None:
            L = np.asarray(bc.velocity_gradient)
            if L.shape != (mesh.dim, mesh.dim):
                raise CaseError(f"{case.where(bc.where + '.velocity_gradient')} must be {mesh.dim}x{mesh.dim} "
                                f"for this mesh")
            x = mesh.points[nodes] - np.asarray(bc.center[: mesh.dim])
            out.append(Prescribed(nodes, every, every, 1.0, x, bc.until, L))
            continue
        if any(bc.mask[mesh.dim:]):
            raise CaseError(f"{case.where(bc.where)}: component z on a 2D mesh (allowed: x, y)")
        mask = np.asarray(bc.mask[: mesh.dim], dtype=bool)
        v = np.broadcast_to(np.asarray(bc.velocity[: mesh.dim], dtype=float), (len(nodes), mesh.dim))
        out.append(Prescribed(nodes, mask, mask, 1.0, v, bc.until))
    return out


def boundary_at(entries: list[Prescribed], n_nodes: int, dim: int, time: float = 0.0):
    """Mask and velocity (n_nodes, dim) of prescribed velocity components at ``time`` (s).

    Later entries win; after its ``until`` time an entry holds its components still (velocity 0).
    """
    fixed = np.zeros((n_nodes, dim), dtype=np.int32)
    v = np.zeros((n_nodes, dim))
    for e in entries:
        on = 1.0 if e.until is None or time < e.until else 0.0
        fixed[np.ix_(e.nodes, np.flatnonzero(e.fix))] = 1
        ve = (on * e.scale) * e.velocity
        if e.gradient is not None:
            ve = ve @ e.gradient.T
        cols = np.flatnonzero(e.write)
        v[np.ix_(e.nodes, cols)] = ve[:, cols]
    return fixed, v


def boundary_arrays(case: Case, mesh: Mesh, time: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Mask and velocity (n_nodes, dim) of the case's prescribed velocities at ``time`` (s)."""
    return boundary_at(resolve_bcs(case, mesh), mesh.n_nodes, mesh.dim, time)


class BoundarySwitch:
    """Switches entries with an ``until`` time off mid-step: before step n the FEM gets the
    arrays of time (n - 1/2) dt whenever an entry's state changes."""

    def __init__(self, fem, entries: list[Prescribed], n_nodes: int, dim: int, dt: float, start: int = 0,
                 resumed: bool = False):
        self.fem, self.entries, self.shape, self.dt = fem, entries, (n_nodes, dim), dt
        self.timed = [e.until for e in entries if e.until is not None]
        self.active = self._state(start + 1)
        if resumed and self.timed:              # a checkpoint does not hold the prescribed velocities
            self._apply(start + 1)

    def _state(self, step: int) -> tuple:
        return tuple((step - 0.5) * self.dt < t for t in self.timed)

    def _apply(self, step: int) -> None:
        self.fem.set_boundary(*boundary_at(self.entries, *self.shape, (step - 0.5) * self.dt))

    def before(self, step: int) -> None:
        """Update the FEM's prescribed velocities for ``step`` when a timed entry switched."""
        if not self.timed:
            return
        now = self._state(step)
        if now != self.active:
            self._apply(step)
        self.active = now


def pressure_forces(case: Case, mesh: Mesh, thickness: float) -> np.ndarray:
    """Nodal forces (n_nodes, dim) of pressures on facet groups (positive pressure pushes inwards)."""
    f = np.zeros((mesh.n_nodes, mesh.dim))
    for load in case.loads:
        if load.facets not in mesh.facet_sets:
            raise CaseError(f"{case.where(load.where + '.facets')} = {load.facets!r} is not a boundary group "
                            f"of {mesh.path} (allowed: {', '.join(sorted(mesh.facet_sets))})")
        facets = mesh.facet_sets[load.facets]
        x = mesh.points[facets]
        if mesh.dim == 2:
            t = x[:, 1] - x[:, 0]
            n_len = np.stack([t[:, 1], -t[:, 0]], axis=1)          # outward normal x length
            nodal = np.repeat((-load.pressure * thickness / 2.0 * n_len)[:, None, :], 2, axis=1)
        else:
            g = 1.0 / np.sqrt(3.0)
            nodal = np.zeros((len(facets), 4, 3))
            ref = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)
            for xi, eta in [(-g, -g), (g, -g), (g, g), (-g, g)]:
                N = (1 + ref[:, 0] * xi) * (1 + ref[:, 1] * eta) / 4.0
                dxi = np.einsum("a,fai->fi", ref[:, 0] * (1 + ref[:, 1] * eta) / 4.0, x)
                deta = np.einsum("a,fai->fi", ref[:, 1] * (1 + ref[:, 0] * xi) / 4.0, x)
                nodal += -load.pressure * N[None, :, None] * np.cross(dxi, deta)[:, None, :]
        np.add.at(f, facets, nodal)
    return f


def curve_weights(case: Case, mesh: Mesh, fem: ExplicitFEM):
    """Weights turning nodal reactions, displacements and Gauss-point strains into curve values."""
    nc = len(case.curves)
    w_r = np.zeros((nc, mesh.n_nodes, mesh.dim))
    w_u = np.zeros((nc, mesh.n_nodes, mesh.dim))
    w_e = np.zeros((nc, 3, 3))
    strain_index = {"xx": (0, 0), "yy": (1, 1), "zz": (2, 2), "xy": (0, 1), "yz": (1, 2), "xz": (0, 2)}
    total_volume = fem.volume.sum()
    for c, curve in enumerate(case.curves):
        if curve.quantity == "mean_strain":
            if curve.component == "vol":
                w_e[c] = np.eye(3)
            else:
                i, j = strain_index[curve.component]
                w_e[c, i, j] += 0.5
                w_e[c, j, i] += 0.5
            w_e[c] *= curve.scale / total_volume
            continue
        nodes = _nodes(case, mesh, curve.where, curve.nodes, None)
        if curve.component == "z" and mesh.dim == 2:
            raise CaseError(f"{case.where(curve.where + '.component')} = 'z' on a 2D mesh (allowed: x, y, radial)")
        d = _direction(mesh, nodes, curve.component)
        if curve.quantity == "reaction":
            w_r[c, nodes] = curve.scale * d
        else:
            w_u[c, nodes] = curve.scale * d / len(nodes)
    return w_r, w_u, w_e
