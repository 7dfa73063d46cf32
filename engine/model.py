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
    bcs: tuple = ()                    # the resolved [[bc]] entries (engine.boundary.Prescribed)


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
    bcs = resolve_bcs(case, mesh)
    fem.set_boundary(*boundary_at(bcs, mesh.n_nodes, mesh.dim))
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
                 material_check=_cap_check(case, material, ngp) if case.material["model"] == "dem" else None,
                 bcs=tuple(bcs))


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
