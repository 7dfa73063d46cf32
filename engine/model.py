"""Builds an FEM model from a validated case: mesh, material batch, supports, loads, curves.

Everything here runs once at set-up (numpy, vectorised); boundary conditions, loads and curve
weights are resolved in ``engine.boundary``; the step loop is in ``engine.driver``.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import numpy as np

from engine.boundary import boundary_at, curve_weights, pressure_forces, resolve_bcs
from engine.case import Case, CaseError
from engine.mesh import Mesh, MeshError, load_mesh
from kernels import registry
from kernels.fem import ExplicitFEM, critical_time_step
from kernels.registry import BatchRequest

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
    bcs: tuple = ()                    # the resolved [[bc]] entries (engine.boundary.Prescribed)


def make_material(case: Case, n_points: int, kinematics: str, dim: int, points_per_element: int,
                  cluster: str | None = None):
    """The Gauss-point material batch of ``case.material`` (``kernels.registry``); ``cluster``: the
    Ray address of a partitioned DEM batch (None: a local cluster)."""
    from kernels.material import MaterialFailure
    from kernels.packing import PackingError
    from kernels.periodic_cell import CapacityError
    from kernels.placement import PlacementError

    request = BatchRequest(n_points=n_points, p0=case.p0, kinematics=kinematics, dim=dim,
                           points_per_element=points_per_element, cluster=cluster)
    try:
        batch = registry.build(case.material, request)
    except (PlacementError, MaterialFailure) as exc:
        raise CaseError(f"{case.where('material.workers')}: {exc}") from None
    except (PackingError, ValueError) as exc:
        raise CaseError(f"{case.where(_written(case, 'packing'))}: {exc}") from None
    except CapacityError as exc:
        raise CaseError(f"{case.where('material.dem.max_contacts_per_particle')}: {exc}") from None
    for note in getattr(batch, "notes", ()):            # DEM: restored contact state, or re-consolidated
        sys.stderr.write(f"note: {note}\n")
    return batch


def _written(case: Case, key: str) -> str:
    """``material.KEY`` as the case gives it: flat (``material.packing``, which wins) or in the model's
    sub-table (``material.dem.packing``)."""
    table = case.source.get("material", {}) if isinstance(case.source, dict) else {}
    model = case.material.model
    if key not in table and isinstance(table.get(model), dict) and key in table[model]:
        return f"material.{model}.{key}"
    return f"material.{key}"


MAX_STEP_DISPLACEMENT = 0.1   # prescribed displacement per step, as a fraction of the element's size


def step_displacement(case: Case, mesh: Mesh, v_fixed: np.ndarray) -> tuple[float, int]:
    """The largest prescribed displacement of one step (``run.dt`` times the prescribed velocity,
    m) over the size of an element holding that node (sqrt of its area in 2D, cube root of its
    volume in 3D), and that element: (ratio, element index; -1 when nothing moves)."""
    du = np.linalg.norm(v_fixed, axis=1) * case.dt
    if not du.any():
        return 0.0, -1
    x = mesh.points[mesh.cells]
    if mesh.dim == 2:
        a, b = x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]
        size = np.sqrt(np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]) / 2)
    else:
        size = np.cbrt(np.prod(np.ptp(x, axis=1), axis=1))
    ratio = du[mesh.cells].max(axis=1) / size
    k = int(np.argmax(ratio))
    return float(ratio[k]), k


def _check_step_displacement(case: Case, mesh: Mesh, v_fixed: np.ndarray) -> None:
    """Refuse a ``run.dt`` whose prescribed displacement per step is a sizeable part of an element:
    no mass scaling makes such a step quasi-static; elements would invert within a few steps."""
    ratio, k = step_displacement(case, mesh, v_fixed)
    if ratio > MAX_STEP_DISPLACEMENT:
        most = case.dt * MAX_STEP_DISPLACEMENT / ratio
        raise CaseError(f"{case.where('run.dt')} = {case.dt:g} s moves the prescribed nodes of element {k} by "
                        f"{ratio:.3g} of its size in one step (at most {MAX_STEP_DISPLACEMENT:g}): lower run.dt "
                        f"to <= {most:.3g} s and raise run.steps to keep the same loading")


def build(case: Case, cluster: str | None = None) -> Model:
    """Set up mesh, FEM fields, material, boundary conditions, loads and curves for ``case``
    (``cluster``: the Ray address for a DEM material partitioned over workers)."""
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
    material = make_material(case, mesh.n_elem * ngp, kinematics, mesh.dim, ngp, cluster)

    density = case.material.density
    wave = material.wave_modulus()
    nu = case.material.params.get("nu")
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
    bcs = resolve_bcs(case, mesh)
    fixed, v_fixed = boundary_at(bcs, mesh.n_nodes, mesh.dim)
    _check_step_displacement(case, mesh, v_fixed)
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
                 material_check=material.check, bcs=tuple(bcs))

