"""Builds an FEM model from a validated case: mesh, material batch, supports, loads, curves.

Everything here runs once at set-up (numpy, vectorised); the step loop is in ``engine.driver``.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import numpy as np

from engine.case import COMPONENTS, Case, CaseError
from engine.mesh import Mesh, MeshError, load_mesh
from kernels.fem import ExplicitFEM, critical_time_step

log = logging.getLogger(__name__)


@dataclass
class Model:
    case: Case
    mesh: Mesh
    fem: ExplicitFEM
    material: object
    kinematics: str
    dt_crit: float
    mass_scaling: float
    wave_modulus: float
    curve_names: list
    material_check: object = None      # step -> message when the material failed, '' otherwise


def make_material(case: Case, n_points: int, kinematics: str, dim: int):
    """The Gauss-point material batch named by ``material.model`` (registry, bound once)."""
    m = case.material
    if m["model"] == "elastic":
        from kernels.elastic import ElasticBatch

        return ElasticBatch(n_points, case.p0, m["E"], m["nu"], plane_stress=kinematics == "plane_stress")
    if m["model"] in ("csuh", "mcc", "ime"):
        from kernels.stress_point import make_material_batch

        return make_material_batch(m["model"], n_points, case.p0, m["params"], **m["options"])
    if m["model"] == "dem":
        from kernels.packing import PackingError, load_packing
        from kernels.rve_batch import RVEBatch

        try:
            packings = [load_packing(p) for p in m["packing"]]
            batch = RVEBatch(packings, n_points, dim, m["steps_per_increment"], m["tol"], m["cap"],
                             {**m["overrides"], "p0": case.p0 or 100e3})
        except (PackingError, ValueError) as exc:
            raise CaseError(f"{case.where('material.packing')}: {exc}") from None
        for note in batch.notes:            # restored contact state, or re-consolidated: say which
            sys.stderr.write(f"note: {note}\n")
        return batch
    raise CaseError(f"{case.where('material.model')} = {m['model']!r} is not available")


def build(case: Case) -> Model:
    """Set up mesh, FEM fields, material, boundary conditions, loads and curves for ``case``."""
    try:
        mesh = load_mesh(case.mesh_file, case.mesh_scale)
    except MeshError as exc:
        raise CaseError(f"{case.where('mesh.file')}: {exc}") from None
    kinematics = case.kinematics or ("3d" if mesh.dim == 3 else "plane_strain")
    if (kinematics == "3d") != (mesh.dim == 3):
        raise CaseError(f"{case.where('run.kinematics')} = {kinematics!r} does not fit the {mesh.dim}D mesh "
                        f"(allowed: {'3d' if mesh.dim == 3 else 'plane_strain, plane_stress'})")
    thickness = case.thickness if mesh.dim == 2 else 1.0
    ngp = 1 if mesh.dim == 2 else 8
    material = make_material(case, mesh.n_elem * ngp, kinematics, mesh.dim)

    density = case.material["density"]
    wave = material.wave_modulus()
    nu = case.material.get("nu", case.material.get("params", {}).get("nu"))
    dt_crit = critical_time_step(mesh.points, mesh.cells, wave, density, nu, thickness)
    if case.mass_scaling == "auto":
        scaling = max(1.0, (case.dt / (case.dt_safety * dt_crit)) ** 2)
    else:
        scaling = case.mass_scaling
    dt_crit_scaled = dt_crit * np.sqrt(scaling)
    if case.dt > dt_crit_scaled:
        need = (case.dt / dt_crit) ** 2
        raise CaseError(f"{case.where('run.dt')} = {case.dt:g} s exceeds the stable time step "
                        f"{dt_crit_scaled:.3g} s (wave modulus {wave:.3g} Pa, density {density:g} kg/m^3, "
                        f"mass scaling {scaling:g}); lower run.dt or set run.mass_scaling >= {need:.3g} "
                        f"or \"auto\"")

    curves = case.curves
    fem = ExplicitFEM(mesh.points, mesh.cells, density * scaling, thickness, n_curves=len(curves),
                      updated=case.geometry == "updated")
    fem.set_stress(material.initial_stress())
    fixed, v_fixed = boundary_arrays(case, mesh)
    fem.set_boundary(fixed, v_fixed)
    f_ext = pressure_forces(case, mesh, thickness)
    if case.gravity is not None:
        if len(case.gravity) != mesh.dim:
            raise CaseError(f"{case.where('run.gravity')} needs {mesh.dim} components, got {len(case.gravity)}")
        f_ext += fem.lumped_mass()[:, None] / scaling * np.asarray(case.gravity)[None, :]
    fem.set_external_force(f_ext)
    fem.set_curves(*curve_weights(case, mesh, fem))
    log.info("%s; dt_crit %.3g s, mass scaling %.3g", mesh.summary(), dt_crit, scaling)
    return Model(case=case, mesh=mesh, fem=fem, material=material, kinematics=kinematics,
                 dt_crit=dt_crit, mass_scaling=scaling, wave_modulus=wave, curve_names=[c.name for c in curves],
                 material_check=_cap_check(case, material, ngp) if case.material["model"] == "dem" else None)


def _cap_check(case: Case, cells, ngp: int):
    """The DEM cells' check after each step: cells that hit the relaxation cap stop the run
    (``material.on_cap = "stop"``) or are reported (``"warn"``)."""
    stop = case.material["on_cap"] == "stop"

    def check(step: int) -> str:
        hit = cells.cap_hit()
        if not len(hit):
            return ""
        k = int(hit[0])
        msg = (f"step {step}: {len(hit)} RVE cell(s) did not reach equilibrium within material.cap = "
               f"{case.material['cap']} relaxation steps, first at Gauss point {k} (element {k // ngp}, "
               f"unbalanced-force ratio {cells.unbalanced[k]:.3g} > material.tol)")
        if stop:
            return msg + "; raise material.cap or material.steps_per_increment, or set material.on_cap = 'warn'"
        log.warning("%s", msg)
        return ""
    return check


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


def boundary_arrays(case: Case, mesh: Mesh, time: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Mask and velocity (n_nodes, dim) of prescribed velocity components at ``time`` (s).

    Later entries win; after its ``until`` time an entry holds its components still (velocity 0).
    """
    fixed = np.zeros((mesh.n_nodes, mesh.dim), dtype=np.int32)
    v = np.zeros((mesh.n_nodes, mesh.dim))
    for bc in case.bcs:
        nodes = _nodes(case, mesh, bc.where, bc.nodes, bc.at)
        on = 1.0 if bc.until is None or time < bc.until else 0.0
        if bc.radial_velocity is not None:
            fixed[nodes, :2] = 1
            v[nodes] = on * bc.radial_velocity * _direction(mesh, nodes, "radial", bc.center)
            continue
        if bc.velocity_gradient is not None:
            L = np.asarray(bc.velocity_gradient)
            if L.shape != (mesh.dim, mesh.dim):
                raise CaseError(f"{case.where(bc.where + '.velocity_gradient')} must be {mesh.dim}x{mesh.dim} "
                                f"for this mesh")
            fixed[nodes] = 1
            v[nodes] = on * (mesh.points[nodes] - np.asarray(bc.center[: mesh.dim])) @ L.T
            continue
        for d in range(3):
            if bc.mask[d]:
                if d >= mesh.dim:
                    raise CaseError(f"{case.where(bc.where)}: component z on a 2D mesh (allowed: x, y)")
                fixed[nodes, d] = 1
                v[nodes, d] = on * bc.velocity[d]
    return fixed, v


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
