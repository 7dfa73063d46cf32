"""Study files (TOML), read and validated once, at the edge (keys documented in docs/study.md).

A study names training runs (FEM-DEM runs that record Gauss-point datasets), calibrations on
their datasets, surrogates (a model with preset parameters or a calibration's result) and test
cases; every test case runs once as the FEM-DEM reference and once per surrogate, and is compared.
A ``[scale]`` table shrinks every run of the study coherently.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from engine.case import CaseError, _Table, parse_override, read_toml
from kernels import registry

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
PATH_KEYS = ("mesh.file", ".params", ".packing")      # override keys whose values are file paths
OPTIMIZERS = ("adam", "lbfgs", "cmaes")


class StudyError(CaseError):
    """A one-line message naming the study file, the key and what is allowed."""


@dataclass(frozen=True)
class Scale:
    """``[scale]``: factors and replacements applied to every run of the study."""
    steps: float = 1.0            # x run.steps of FEM-DEM runs (run.dt divided by the realised factor)
    surrogate_steps: float = 1.0  # the same for the surrogate runs
    dem_steps: float = 1.0        # x material.dem.steps_per_increment and material.dem.cap
    packing_2d: str | None = None  # replaces material.dem.packing of 2D cases (absolute path)
    packing_3d: str | None = None  # the same for 3D cases
    checkpoints: int = 4          # checkpoints per run (interrupted runs resume from the last one)
    dem_set: tuple = ()           # --set overrides of every FEM-DEM run
    surrogate_set: tuple = ()     # --set overrides of every surrogate run


@dataclass(frozen=True)
class RunSpec:
    """A case file plus ``--set`` overrides (``[[train]]`` and ``[[test]]`` entries)."""
    name: str
    case: Path
    overrides: tuple
    surrogates: tuple = ()        # test entries: the surrogates it runs with (all by default)
    dem_set: tuple = ()           # overrides of this entry's FEM-DEM run only (after the scale's)
    surrogate_set: tuple = ()     # overrides of this entry's surrogate runs only (after the scale's)


@dataclass(frozen=True)
class CalibrationSpec:
    """``[[calibration]]``: ``engine calibrate`` on the dataset of training run ``train``."""
    name: str
    train: str
    model: str
    scheme: int | None
    optimizer: str
    epochs: int
    split: tuple
    seed: int
    init: str
    args: tuple                   # further ``engine calibrate`` arguments, e.g. ("--lr", "0.02")


@dataclass(frozen=True)
class SurrogateSpec:
    """``[[surrogate]]``: ``model`` with the preset ``params``, or the result of ``calibration``."""
    name: str
    model: str
    params: str | None
    calibration: str | None


@dataclass(frozen=True)
class Study:
    path: Path
    name: str
    scale: Scale
    train: tuple
    calibrations: tuple
    surrogates: tuple
    tests: tuple

    def where(self, key: str) -> str:
        return f"{self.path}: {key}"


def load_study(path: str | Path) -> Study:
    """Read and validate a study file. Raises :class:`StudyError`."""
    path = Path(path)
    return validate_study(read_toml(path, "study file", StudyError), path)


def validate_study(data: dict, path: Path) -> Study:
    where = str(path)
    sections = ("study", "scale", "train", "calibration", "surrogate", "test")
    for key in data:
        if key not in sections:
            raise StudyError(f"{where}: unknown section [{key}] (allowed: {', '.join(sections)})")
    head = _Table(data.get("study", {}), where, "study")
    name = head.get("name", str, path.stem)
    head.finish()
    train = tuple(_run_spec(t, where, f"train.{i}", path.parent) for i, t in enumerate(_entries(data, "train", where)))
    cals = tuple(_calibration(t, where, i, train) for i, t in enumerate(_entries(data, "calibration", where)))
    sur = tuple(_surrogate(t, where, i, cals) for i, t in enumerate(_entries(data, "surrogate", where)))
    tests = tuple(_run_spec(t, where, f"test.{i}", path.parent, sur) for i, t in enumerate(_entries(data, "test", where)))
    for kind, items in (("train", train), ("calibration", cals), ("surrogate", sur), ("test", tests)):
        _unique(items, where, kind)
    if not train and not tests:
        raise StudyError(f"{where}: a study needs at least one [[train]] or [[test]] entry")
    if tests and not sur:
        raise StudyError(f"{where}: [[test]] entries need at least one [[surrogate]] to compare with FEM-DEM")
    return Study(path=path, name=name, scale=_scale(data.get("scale", {}), where, path.parent), train=train,
                 calibrations=cals, surrogates=sur, tests=tests)


def _entries(data: dict, key: str, where: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise StudyError(f"{where}: {key} must be an array of tables ([[{key}]])")
    return value


def _unique(items, where: str, kind: str) -> None:
    seen = set()
    for item in items:
        if item.name in seen:
            raise StudyError(f"{where}: two [[{kind}]] entries are named {item.name!r}; names must be unique")
        seen.add(item.name)


def _name(table: _Table) -> str:
    name = table.get("name", str)
    if not NAME.match(name):
        raise StudyError(f"{table.where}: {table.name}.name = {name!r}: use letters, digits, '_', '-', '.'")
    return name


def _scale(data, where: str, base: Path) -> Scale:
    t = _Table(data, where, "scale")
    steps = t.get("steps", float, 1.0, check=lambda v: 0 < v <= 1, allowed="0 < steps <= 1")
    sur = t.get("surrogate_steps", float, steps, check=lambda v: 0 < v <= 1, allowed="0 < surrogate_steps <= 1")
    dem = t.get("dem_steps", float, 1.0, check=lambda v: 0 < v <= 1, allowed="0 < dem_steps <= 1")
    packs = {}
    for key in ("packing_2d", "packing_3d"):
        value = t.get(key, str, None)
        if value is not None:
            p = (base / value).resolve()
            if not p.is_file():
                raise StudyError(f"{where}: scale.{key}: {p} does not exist")
            packs[key] = str(p)
    ckpt = t.get("checkpoints", int, 4, check=lambda v: v >= 0, allowed=">= 0 (0: none)")
    sets = {k: tuple(_override(x, where, f"scale.{k}", base) for x in t.get(k, list, [])) for k in ("dem_set", "surrogate_set")}
    t.finish()
    return Scale(steps=steps, surrogate_steps=sur, dem_steps=dem, checkpoints=ckpt, **packs, **sets)


def _run_spec(data, where: str, key: str, base: Path, surrogates: tuple | None = None) -> RunSpec:
    t = _Table(data, where, key)
    name = _name(t)
    case = (base / t.get("case", str)).resolve()
    if not case.is_file():
        raise StudyError(f"{where}: {key}.case: {case} does not exist")
    overrides = [_override(text, where, key, base) for text in t.get("set", list, [])]
    chosen = ()
    if surrogates is not None:
        known = [s.name for s in surrogates]
        chosen = tuple(t.get("surrogates", list, known))
        for s in chosen:
            if s not in known:
                raise StudyError(f"{where}: {key}.surrogates: {s!r} is not a [[surrogate]] (allowed: {', '.join(known)})")
    only = {k: tuple(_override(x, where, f"{key}.{k}", base) for x in t.get(k, list, []))
            for k in ("dem_set", "surrogate_set")}
    t.finish()
    return RunSpec(name=name, case=case, overrides=tuple(overrides), surrogates=chosen, **only)


def _override(text, where: str, key: str, base: Path) -> str:
    """A ``set`` entry, checked; a file path value (mesh, params, packing) made absolute from ``base``."""
    if not isinstance(text, str):
        raise StudyError(f"{where}: {key}.set entries must be strings like \"run.steps=20\", got {text!r}")
    parts, value = parse_override(text)
    name = ".".join(map(str, parts))
    if isinstance(value, str) and (name == "mesh.file" or name.endswith(PATH_KEYS[1:])):
        path = (base / value).resolve()
        if not path.is_file():
            raise StudyError(f"{where}: {key}.set: {name} = {value!r}: {path} does not exist")
        return f"{name}={json.dumps(str(path))}"
    return text


def _calibration(data, where: str, i: int, train: tuple) -> CalibrationSpec:
    t = _Table(data, where, f"calibration.{i}")
    name = _name(t)
    trains = [r.name for r in train]
    src = t.get("train", str)
    if src not in trains:
        raise StudyError(f"{where}: calibration.{i}.train = {src!r} is not a [[train]] run (allowed: {', '.join(trains) or 'none'})")
    models = registry.names(differentiable=True)
    model = t.get("model", tuple(models), "csuh")
    scheme = t.get("scheme", int, None, check=lambda v: v in (1, 2, 3), allowed="1, 2, 3 (CSUH only)")
    if scheme is not None and model != "csuh":
        raise StudyError(f"{where}: calibration.{i}.scheme applies to model 'csuh' only")
    split = t.get("split", list, [0.8, 0.1, 0.1])
    if len(split) != 3 or not all(isinstance(v, (int, float)) for v in split):
        raise StudyError(f"{where}: calibration.{i}.split must be three numbers, e.g. [0.8, 0.1, 0.1]")
    args = t.get("args", list, [])
    if not all(isinstance(a, str) for a in args):
        raise StudyError(f"{where}: calibration.{i}.args must be strings, e.g. [\"--lr\", \"0.02\"]")
    spec = CalibrationSpec(name=name, train=src, model=model, scheme=scheme,
                           optimizer=t.get("optimizer", OPTIMIZERS, "adam"),
                           epochs=t.get("epochs", int, 100, check=lambda v: v >= 1, allowed=">= 1"),
                           split=tuple(float(v) for v in split), seed=t.get("seed", int, 0),
                           init=t.get("init", str, "original"), args=tuple(args))
    t.finish()
    return spec


def _surrogate(data, where: str, i: int, cals: tuple) -> SurrogateSpec:
    t = _Table(data, where, f"surrogate.{i}")
    name = _name(t)
    cal = t.get("calibration", str, None)
    if cal is not None:
        by_name = {c.name: c for c in cals}
        if cal not in by_name:
            raise StudyError(f"{where}: surrogate.{i}.calibration = {cal!r} is not a [[calibration]] "
                             f"(allowed: {', '.join(by_name) or 'none'})")
        model = t.get("model", (by_name[cal].model,), by_name[cal].model)
        if "params" in t.data:
            raise StudyError(f"{where}: surrogate.{i}: give params (a preset) or calibration, not both")
        t.finish()
        return SurrogateSpec(name=name, model=model, params=None, calibration=cal)
    model = t.get("model", tuple(registry.names(differentiable=True)), "csuh")
    presets = list(registry.get(model).schema.presets)
    params = t.get("params", tuple(presets), presets[0] if presets else None) if presets else None
    t.finish()
    return SurrogateSpec(name=name, model=model, params=params, calibration=None)
