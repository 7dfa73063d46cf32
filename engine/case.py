"""Case files (TOML): parsed, overridden and validated once, at the edge.

Every key, its type, default and meaning is documented in ``docs/cases.md``. Only the
validated :class:`Case` travels downstream; ``Case.resolved`` is the dictionary written to
``run.json`` (all defaults filled in).
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernels.registry import MaterialConfig

log = logging.getLogger(__name__)

KINEMATICS = ("plane_strain", "plane_stress", "3d")
DAMPING = ("local", "mass", "none")
QUANTITIES = ("reaction", "displacement", "mean_strain")
COMPONENTS = ("x", "y", "z")
REQUIRED = object()
PATH_KEYS = (("mesh", "file"), ("material", "params"), ("material", "packing"))
PATHS_NOTE = "a path in the case file is relative to the case file's folder, one given with --set to the current directory"


class CaseError(ValueError):
    """A one-line message naming the case file, the key and what is allowed."""


@dataclass(frozen=True)
class BoundaryCondition:
    """Prescribed velocity on a node set: ``velocity[d]`` (m/s) on components where ``mask[d]``."""
    where: str
    nodes: str | tuple | None
    at: tuple | None
    mask: tuple
    velocity: tuple
    radial_velocity: float | None
    velocity_gradient: tuple | None
    center: tuple
    until: float | None


@dataclass(frozen=True)
class PressureLoad:
    where: str
    facets: str
    pressure: float


@dataclass(frozen=True)
class Curve:
    where: str
    name: str
    quantity: str
    nodes: str | None
    component: str
    scale: float


@dataclass(frozen=True)
class Output:
    """``[output]``: frame interval, writers and checkpoint interval (all in steps; 0 = never)."""
    every: int
    vtk: bool
    dataset: bool
    dataset_every: int
    checkpoint_every: int


@dataclass(frozen=True)
class Case:
    path: Path
    name: str
    steps: int
    dt: float
    kinematics: str | None
    geometry: str
    dt_safety: float
    mass_scaling: float | str
    max_energy_ratio: float
    gravity: tuple | None
    mesh_file: Path
    mesh_scale: float
    thickness: float
    material: MaterialConfig
    p0: float
    damping: str
    alpha: float
    c: float
    bcs: tuple
    loads: tuple
    curves: tuple
    output: Output
    resolved: dict = field(repr=False)
    source: dict = field(repr=False, default_factory=dict)

    def where(self, key: str) -> str:
        return f"{self.path}: {key}"


# ---------------------------------------------------------------------------------------------
def _type_name(kind) -> str:
    if isinstance(kind, tuple):
        return " or ".join(repr(k) if isinstance(k, str) else _type_name(k) for k in kind)
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false",
            list: "an array", dict: "a table"}.get(kind, str(kind))


def _check(value, kind, where: str, key: str):
    """Convert/validate one value against ``kind``: a type, or a tuple of allowed strings/types."""
    if isinstance(kind, tuple):
        for k in kind:
            if isinstance(k, str) and value == k:
                return value
            if isinstance(k, type):
                try:
                    return _check(value, k, where, key)
                except CaseError:
                    pass
        raise CaseError(f"{where}: {key} = {value!r} is not allowed (allowed: {_type_name(kind)})")
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise CaseError(f"{where}: {key} must be a finite number, got {value!r}")
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (str, bool, list, dict) and isinstance(value, kind):
        return value
    raise CaseError(f"{where}: {key} must be {_type_name(kind)}, got {value!r}")


class _Table:
    """Reads keys from one TOML table, remembering which were used so leftovers are errors."""

    def __init__(self, data: Any, where: str, name: str):
        if not isinstance(data, dict):
            raise CaseError(f"{where}: [{name}] must be a table, got {data!r}")
        self.data, self.where, self.name, self.used = data, where, name, set()
        self.resolved: dict = {}

    def get(self, key: str, kind, default=REQUIRED, check=None, allowed: str = ""):
        self.used.add(key)
        full = f"{self.name}.{key}"
        if key not in self.data:
            if default is REQUIRED:
                raise CaseError(f"{self.where}: missing required key {full} ({_type_name(kind)})")
            self.resolved[key] = default
            return default
        value = _check(self.data[key], kind, self.where, full)
        if check is not None and not check(value):
            raise CaseError(f"{self.where}: {full} = {value!r} is out of range (allowed: {allowed})")
        self.resolved[key] = value
        return value

    def finish(self, allowed_extra: tuple = ()):
        unknown = sorted(set(self.data) - self.used - set(allowed_extra))
        if unknown:
            known = ", ".join(sorted(self.used | set(allowed_extra)))
            raise CaseError(f"{self.where}: unknown key {self.name}.{unknown[0]} (allowed: {known})")
        return self.resolved


# ---------------------------------------------------------------------------------------------
def parse_override(text: str) -> tuple[list, Any]:
    """``dotted.key=value`` -> (path parts, value); the value is read as TOML, else as a string."""
    if "=" not in text:
        raise CaseError(f"--set {text!r}: expected dotted.key=value")
    key, raw = text.split("=", 1)
    parts = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    if not all(str(p) for p in parts):
        raise CaseError(f"--set {text!r}: empty key part")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts, value


def is_path_key(parts: list) -> bool:
    """``mesh.file``, ``material.params``, ``material.packing``, also in a model's sub-table
    (``material.csuh.params``, ``material.dem.packing``)."""
    key = tuple(parts)
    if len(key) == 3 and key[0] == "material":
        key = ("material", key[2])
    return key in PATH_KEYS


def _from_cwd(value):
    """A path (or a list of paths) given on the command line, made absolute from the current directory."""
    if isinstance(value, str):
        return os.path.abspath(value)
    if isinstance(value, list):
        return [_from_cwd(v) for v in value]
    return value


def apply_overrides(data: dict, overrides: list[str], path: Path) -> dict:
    """``data`` with the ``--set`` overrides applied; relative paths of :data:`PATH_KEYS` are taken
    from the current directory (as typed), not from the case file's folder."""
    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        if is_path_key(parts):
            value = _from_cwd(value)
        node = data
        for i, p in enumerate(parts[:-1]):
            if isinstance(node, list):
                if not isinstance(p, int) or p >= len(node):
                    raise CaseError(f"{path}: --set {text}: index {p} out of range for "
                                    f"{'.'.join(map(str, parts[:i]))} (has {len(node)} entries)")
                node = node[p]
            else:
                node = node.setdefault(p, {})
        last = parts[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last >= len(node):
                raise CaseError(f"{path}: --set {text}: index out of range")
            node[last] = value
        else:
            node[last] = value
    return data


def read_toml(path: Path, what: str = "case file", error=CaseError) -> dict:
    """The TOML file ``path`` as a dictionary; ``error`` naming the file when missing or invalid."""
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None


def load_case(path: str | Path, overrides: list[str] | None = None) -> Case:
    """Read, override and validate a case file. Raises :class:`CaseError`."""
    path = Path(path)
    data = apply_overrides(read_toml(path), overrides or [], path)
    return validate(data, path)


def validate(data: dict, path: Path) -> Case:
    where = str(path)
    sections = ("run", "mesh", "material", "initial", "damping", "bc", "load", "curve", "output")
    for key in data:
        if key not in sections:
            raise CaseError(f"{where}: unknown section [{key}] (allowed: {', '.join(sections)})")
    resolved: dict = {}

    run = _Table(data.get("run", {}), where, "run")
    name = run.get("name", str, path.stem)
    steps = run.get("steps", int, check=lambda v: v > 0, allowed="> 0")
    dt = run.get("dt", float, check=lambda v: v > 0, allowed="> 0 s")
    kinematics = run.get("kinematics", KINEMATICS, None)
    geometry = run.get("geometry", ("small", "updated"), "small")
    dt_safety = run.get("dt_safety", float, 0.9, check=lambda v: 0 < v <= 1, allowed="0 < dt_safety <= 1")
    mass_scaling = run.get("mass_scaling", (float, "auto"), 1.0,
                           check=lambda v: v == "auto" or v >= 1.0, allowed='>= 1 or "auto"')
    max_energy_ratio = run.get("max_energy_ratio", float, 0.05, check=lambda v: 0 < v < 1,
                               allowed="0 < max_energy_ratio < 1")
    gravity = run.get("gravity", list, None)
    if gravity is not None:
        gravity = tuple(_check(g, float, where, "run.gravity[]") for g in gravity)
    run.get("description", str, "")
    resolved["run"] = run.finish()

    mesh = _Table(data.get("mesh", {}), where, "mesh")
    mesh_file = (path.parent / mesh.get("file", str)).resolve()
    if not mesh_file.is_file():
        raise CaseError(f"{where}: mesh.file: {mesh_file} does not exist")
    scale = mesh.get("scale", float, 1.0, check=lambda v: v > 0, allowed="> 0")
    thickness = mesh.get("thickness", float, 1.0, check=lambda v: v > 0, allowed="> 0 m")
    resolved["mesh"] = mesh.finish()
    resolved["mesh"]["file"] = str(mesh_file)

    material = _material(data.get("material", {}), where, path.parent)
    resolved["material"] = material.resolved()

    initial = _Table(data.get("initial", {}), where, "initial")
    p0 = initial.get("p0", float, 0.0, check=lambda v: v >= 0, allowed=">= 0 Pa")
    resolved["initial"] = initial.finish()

    damping = _Table(data.get("damping", {}), where, "damping")
    kind = damping.get("kind", DAMPING, "local")
    alpha = damping.get("alpha", float, 0.8 if kind == "local" else 0.0,
                        check=lambda v: 0 <= v < 1, allowed="0 <= alpha < 1")
    c = damping.get("c", float, 0.0, check=lambda v: v >= 0, allowed=">= 0 1/s")
    if kind != "local":
        alpha = 0.0
    if kind != "mass":
        c = 0.0
    resolved["damping"] = damping.finish()

    bcs = tuple(_bc(entry, where, i) for i, entry in enumerate(_array(data, "bc", where)))
    loads = tuple(_load(entry, where, i) for i, entry in enumerate(_array(data, "load", where)))
    curves = tuple(_curve(entry, where, i) for i, entry in enumerate(_array(data, "curve", where)))
    names = [cv.name for cv in curves]
    if len(set(names)) != len(names):
        raise CaseError(f"{where}: curve names must be unique, got {names}")
    resolved["bc"] = [_entry(b) for b in bcs]
    resolved["load"] = [_entry(ld) for ld in loads]
    resolved["curve"] = [_entry(cv) for cv in curves]

    out = _Table(data.get("output", {}), where, "output")
    output = Output(
        every=out.get("every", int, max(1, steps // 50), check=lambda v: v > 0, allowed="> 0 steps"),
        vtk=out.get("vtk", bool, True),
        dataset=out.get("dataset", bool, False),
        dataset_every=out.get("dataset_every", int, 1, check=lambda v: v > 0, allowed="> 0 steps"),
        checkpoint_every=out.get("checkpoint_every", int, 0, check=lambda v: v >= 0, allowed=">= 0 steps"),
    )
    resolved["output"] = out.finish()

    return Case(path=path, name=name, steps=steps, dt=dt, kinematics=kinematics, geometry=geometry,
                dt_safety=dt_safety,
                mass_scaling=mass_scaling, max_energy_ratio=max_energy_ratio, gravity=gravity, mesh_file=mesh_file, mesh_scale=scale,
                thickness=thickness, material=material, p0=p0, damping=kind, alpha=alpha, c=c,
                bcs=bcs, loads=loads, curves=curves, output=output, resolved=resolved,
                source=_source(data, mesh_file))


def _entry(entry) -> dict:
    """A validated ``[[bc]]``, ``[[load]]`` or ``[[curve]]`` entry for ``run.json``, every default filled
    (``mask``/``velocity``: x, y, z components of a bc; ``where`` is the entry's position)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(entry).items()}


def _source(data: dict, mesh_file: Path) -> dict:
    """The case as given (after overrides) with the mesh path made absolute, for ``--resume``."""
    source = copy.deepcopy(data)
    source["mesh"]["file"] = str(mesh_file)
    return source


def _array(data: dict, key: str, where: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise CaseError(f"{where}: [[{key}]] must be an array of tables")
    return value


def _material(data: Any, where: str, base_dir: Path):
    """``[material]``: ``model``, ``density`` and the model's keys, given flat or in a sub-table named
    after the model (``[material.csuh]``, ``[material.elastic]`` ...); a flat key wins over the same
    key in the sub-table (so ``--set material.tol=...`` works whatever the file uses). Sub-tables of
    the models not selected are kept for ``--set material.model=...`` and otherwise ignored.
    The model's keys are validated by its registry entry (``kernels.registry``)."""
    from kernels import registry

    if not isinstance(data, dict):
        raise CaseError(f"{where}: [material] must be a table")
    models = registry.names()
    flat = {k: v for k, v in data.items() if not (k in models and isinstance(v, dict))}
    table = _Table(flat, where, "material")
    model = table.get("model", models)
    density = table.get("density", float, check=lambda v: v > 0, allowed="> 0 kg/m^3")
    flat_keys = {k: v for k, v in flat.items() if k not in ("model", "density")}
    sub = data.get(model, {})
    for k in sorted(set(flat_keys) & set(sub)):
        log.info("%s: material.%s = %r overrides [material.%s] %s = %r", where, k, flat_keys[k], model, k, sub[k])
    keys = {**sub, **flat_keys}
    spec = registry.get(model)
    if "params" in keys and spec.configure is None:
        written = "material.params" if "params" in flat_keys else f"material.{model}.params"
        keys["params"] = _params_file(keys["params"], written, where, base_dir, spec.schema)
    try:
        return registry.configure(model, keys, where, density, base_dir=base_dir)
    except ValueError as exc:
        raise CaseError(str(exc)) from None


def _params_file(value, key: str, where: str, base_dir: Path, schema) -> str:
    """The absolute path of a parameter file, read once to check it; a CaseError naming ``key`` as
    written (``material.params`` or ``material.<model>.params``) otherwise."""
    if not isinstance(value, str):
        raise CaseError(f"{where}: {key} = {value!r} must be a path string")
    path = Path(base_dir) / value
    if not path.is_file():
        raise CaseError(f"{where}: {key}: {path}: parameter file not found ({PATHS_NOTE})")
    try:
        schema.load_file(path)
    except ValueError as exc:
        raise CaseError(f"{where}: {key}: {exc}") from None
    return str(path)


def _select(t: _Table) -> tuple:
    nodes = t.get("nodes", (str, list), None)
    if isinstance(nodes, list):
        nodes = tuple(_check(n, str, t.where, f"{t.name}.nodes[]") for n in nodes)
    at = t.get("at", list, None)
    if (nodes is None) == (at is None):
        raise CaseError(f"{t.where}: {t.name} needs exactly one of nodes = \"GROUP\" or at = [x, y(, z)]")
    if at is not None:
        at = tuple(_check(x, float, t.where, f"{t.name}.at[]") for x in at)
    return nodes, at


def _bc(data: dict, where: str, i: int) -> BoundaryCondition:
    t = _Table(data, where, f"bc[{i}]")
    nodes, at = _select(t)
    fix = t.get("fix", list, [])
    velocity = t.get("velocity", dict, {})
    radial = t.get("radial_velocity", float, None)
    grad = t.get("velocity_gradient", list, None)
    center = tuple(_check(x, float, where, f"bc[{i}].center[]") for x in t.get("center", list, [0.0, 0.0, 0.0]))
    until = t.get("until", float, None, check=lambda v: v >= 0, allowed=">= 0 s")
    t.finish()
    if grad is not None:
        if not (isinstance(grad, list) and len(grad) in (2, 3)
                and all(isinstance(r, list) and len(r) == len(grad) for r in grad)):
            raise CaseError(f"{where}: bc[{i}].velocity_gradient must be a square 2x2 or 3x3 array (1/s)")
        grad = tuple(tuple(_check(x, float, where, f"bc[{i}].velocity_gradient[][]") for x in r) for r in grad)
    mask, vel = [0, 0, 0], [0.0, 0.0, 0.0]
    for comp in fix:
        if comp not in COMPONENTS:
            raise CaseError(f"{where}: bc[{i}].fix: {comp!r} is not a component (allowed: x, y, z)")
        mask[COMPONENTS.index(comp)] = 1
    for comp, value in velocity.items():
        if comp not in COMPONENTS:
            raise CaseError(f"{where}: bc[{i}].velocity.{comp}: not a component (allowed: x, y, z)")
        d = COMPONENTS.index(comp)
        if mask[d]:
            raise CaseError(f"{where}: bc[{i}]: component {comp} is both fixed and given a velocity")
        mask[d], vel[d] = 1, _check(value, float, where, f"bc[{i}].velocity.{comp}")
    given = sum([any(mask), radial is not None, grad is not None])
    if given == 0:
        raise CaseError(f"{where}: bc[{i}] prescribes nothing: give fix = [...], velocity = {{...}}, "
                        f"radial_velocity or velocity_gradient")
    if given > 1:
        raise CaseError(f"{where}: bc[{i}]: give only one of fix/velocity, radial_velocity, velocity_gradient")
    return BoundaryCondition(where=f"bc[{i}]", nodes=nodes, at=at, mask=tuple(mask), velocity=tuple(vel),
                             radial_velocity=radial, velocity_gradient=grad, center=center, until=until)


def _load(data: dict, where: str, i: int) -> PressureLoad:
    t = _Table(data, where, f"load[{i}]")
    facets = t.get("facets", str)
    pressure = t.get("pressure", float)
    t.finish()
    return PressureLoad(where=f"load[{i}]", facets=facets, pressure=pressure)


def _curve(data: dict, where: str, i: int) -> Curve:
    t = _Table(data, where, f"curve[{i}]")
    name = t.get("name", str)
    quantity = t.get("quantity", QUANTITIES)
    if quantity == "mean_strain":
        component = t.get("component", ("vol", "xx", "yy", "zz", "xy", "yz", "xz"))
        nodes = None
    else:
        nodes = t.get("nodes", str)
        component = t.get("component", ("x", "y", "z", "radial"))
    scale = t.get("scale", float, 1.0)
    t.finish()
    return Curve(where=f"curve[{i}]", name=name, quantity=quantity, nodes=nodes, component=component,
                 scale=scale)
