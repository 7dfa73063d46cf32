"""A study as a plan of stages: training runs, calibrations, test runs, comparisons.

Every stage has its own folder under the study's output folder, its inputs (the final case
dictionary, the calibration arguments, the runs compared) hashed together with the contents of
the files they read and the hashes of the stages they depend on. A stage is *current* when its
``stages/<name>.json`` says done with the same hash; it is redone when the hash changed and resumed
(runs from their last checkpoint, calibrations with ``--resume``) when it was interrupted.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from engine import __version__
from engine.case import CaseError, apply_overrides, read_toml, validate
from engine.study import cost
from engine.study.spec import RunSpec, Study, StudyError

STAGES = "stages"                  # <out>/stages/<stage>.json: hash, status, wall time, message
LOGS = "logs"                      # <out>/logs/<stage>.log: what the stage printed


@dataclass
class Stage:
    """One job of a study. ``payload`` is JSON: what ``engine.study.jobs`` needs to run it."""
    name: str
    kind: str                      # "run" | "calibrate" | "compare"
    payload: dict
    deps: tuple = ()
    files: tuple = ()              # input files whose contents enter the hash
    estimate_s: float = 0.0
    summary: str = ""
    meta: dict = field(default_factory=dict)     # not hashed: sizes for estimates and the report
    hash: str = field(default="", repr=False)

    def folder(self, out: Path) -> Path:
        """The stage's work: a run folder, a calibration folder or a comparison folder."""
        return Path(out) / self.name

    def info_file(self, out: Path) -> Path:
        return Path(out) / STAGES / f"{self.name}.json"

    def log_file(self, out: Path) -> Path:
        return Path(out) / LOGS / f"{self.name}.log"


def make_plan(study: Study) -> list[Stage]:
    """The stages of ``study`` in dependency order, hashed. Raises StudyError for a bad case."""
    stages = [_run_stage(f"train-{t.name}", t, study, {"output.dataset": True}) for t in study.train]
    train_of = {t.name: s for t, s in zip(study.train, stages)}
    cal_of = {}
    for c in study.calibrations:
        cal_of[c.name] = _calibration_stage(c, train_of[c.train], study)
        stages.append(cal_of[c.name])
    for t in study.tests:
        ref = _run_stage(f"test-{t.name}-dem", t, study, {"material.model": "dem", "output.dataset": True})
        runs = [ref]
        for s in (x for x in study.surrogates if x.name in t.surrogates):
            runs.append(_surrogate_stage(t, s, study, cal_of.get(s.calibration)))
        stages += runs
        stages.append(_compare_stage(t, runs, study))
    by_name = {s.name: s for s in stages}
    for s in stages:
        s.hash = _hash(s, by_name)
    return stages


def _forced(overrides: dict) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]


def _case_data(spec: RunSpec, extra: dict, study: Study) -> dict:
    """The case dictionary with the entry's overrides, ``extra``, the scale's FEM-DEM or surrogate set
    and then the entry's own (``dem_set`` / ``surrogate_set``: e.g. per-case FEM-DEM step counts)."""
    data = apply_overrides(read_toml(spec.case, error=StudyError), [*spec.overrides, *_forced(extra)], spec.case)
    dem = data.get("material", {}).get("model") == "dem"
    sets = [*study.scale.dem_set, *spec.dem_set] if dem else [*study.scale.surrogate_set, *spec.surrogate_set]
    return apply_overrides(data, sets, spec.case)


def _run_stage(name: str, spec: RunSpec, study: Study, extra: dict, params_from: str | None = None,
               model: str | None = None) -> Stage:
    """A run of ``spec``'s case with its overrides, ``extra`` and the study's scale."""
    data = _case_data(spec, extra, study)
    try:
        case = validate(copy.deepcopy(data), spec.case)
        mesh = cost.mesh_size(case)
        data = scaled(data, study, mesh["dim"])
        case = validate(copy.deepcopy(data), spec.case)
    except CaseError as exc:
        raise StudyError(f"{study.where(name)}: {exc}") from None
    files = [str(case.mesh_file), *getattr(case.material.settings, "packing", ())]
    payload = {"case": str(spec.case), "data": data, "params_from": params_from, "model": model}
    est, what = cost.run_estimate(case, mesh)
    meta = {**mesh, "steps": case.steps, "dt": case.dt, "model": case.material.model,
            "dataset_every": case.output.dataset_every}
    return Stage(name=name, kind="run", payload=payload, files=tuple(files), estimate_s=est,
                 deps=(params_from,) if params_from else (), summary=what, meta=meta)


def _surrogate_stage(test: RunSpec, sur, study: Study, cal: Stage | None) -> Stage:
    """``test``'s case with the surrogate ``sur``: a preset, or the calibration ``cal``'s parameters."""
    extra = {"material.model": sur.model, "output.dataset": True}
    if cal is None:
        from kernels import registry

        for k, v in registry.get(sur.model).schema.presets[sur.params].items():
            extra[f"material.{sur.model}.{k}"] = v
    else:
        extra.update({f"material.{sur.model}.{k}": v for k, v in cal.payload["options"].items()})
    return _run_stage(f"test-{test.name}-{sur.name}", test, study, extra,
                      params_from=cal.name if cal else None, model=sur.model)


def scaled(data: dict, study: Study, dim: int) -> dict:
    """``data`` (a case dictionary) with the study's ``[scale]`` applied (see docs/study.md)."""
    sc, data = study.scale, copy.deepcopy(data)
    run, out = data.setdefault("run", {}), data.setdefault("output", {})
    mat = data.get("material", {})
    factor = sc.steps if mat.get("model") == "dem" else sc.surrogate_steps
    steps = max(1, round(run["steps"] * factor))
    if steps != run["steps"]:
        run["dt"] = run["dt"] * run["steps"] / steps
        for key in ("every", "dataset_every"):
            if key in out:
                out[key] = max(1, round(out[key] * steps / run["steps"]))
        run["steps"] = steps
    if sc.checkpoints:
        out["checkpoint_every"] = max(1, math.ceil(steps / sc.checkpoints))
    if mat.get("model") == "dem":
        dem = mat.setdefault("dem", {})
        for key, default in (("steps_per_increment", None), ("cap", None)):
            if key in dem and sc.dem_steps != 1.0:
                dem[key] = max(1, round(dem[key] * sc.dem_steps))
        pack = sc.packing_3d if dim == 3 else sc.packing_2d
        if pack:
            dem["packing"] = pack
    return data


def _calibration_stage(c, train: Stage, study: Study) -> Stage:
    from calibrate.train import SCHEMES

    options = dict(SCHEMES[c.scheme]) if c.scheme else {}
    args = ["--model", c.model, "--optimizer", c.optimizer, "--epochs", str(c.epochs),
            "--split", ",".join(f"{v:g}" for v in c.split), "--seed", str(c.seed), "--init", c.init]
    if c.scheme:
        args += ["--scheme", str(c.scheme)]
    args += list(c.args)
    for i, a in enumerate(args[:-1]):
        if a in ("--lode", "--delta-r"):
            options[{"--lode": "lode", "--delta-r": "delta_r"}[a]] = args[i + 1] if a == "--lode" else float(args[i + 1])
    points, rows = cost.dataset_size(train)
    est = cost.calibration_estimate(points, rows, c.epochs, c.optimizer)
    return Stage(name=f"calibrate-{c.name}", kind="calibrate", deps=(train.name,),
                 payload={"data_from": train.name, "args": args, "options": options},
                 estimate_s=est, summary=f"{c.model}, {c.optimizer}, {c.epochs} epochs on {points} points x {rows} rows")


def _compare_stage(test: RunSpec, runs: list[Stage], study: Study) -> Stage:
    return Stage(name=f"compare-{test.name}", kind="compare", deps=tuple(r.name for r in runs),
                 payload={"runs": [r.name for r in runs]}, estimate_s=cost.COMPARE_S,
                 summary=f"{len(runs) - 1} surrogate run(s) against the FEM-DEM run")


def _file_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _hash(stage: Stage, by_name: dict) -> str:
    """The hash of a stage's inputs: kind, payload, file contents, dependencies' hashes, version."""
    doc = {"kind": stage.kind, "payload": stage.payload, "version": __version__,
           "files": {Path(f).name: _file_hash(f) for f in stage.files},
           "deps": {d: by_name[d].hash for d in stage.deps}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_stage(stage: Stage, out: Path) -> dict | None:
    """The ``stages/<name>.json`` of ``stage`` in the study folder ``out``, or None."""
    path = stage.info_file(out)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def state(stage: Stage, out: Path) -> str:
    """``current`` (done, same inputs), ``resume`` (interrupted, same inputs), ``stale`` (inputs
    changed: redone from scratch), ``failed`` (same inputs, failed before: tried again) or ``new``."""
    info = read_stage(stage, out)
    if info is None:
        return "new"
    if info.get("hash") != stage.hash:
        return "stale"
    return {"done": "current", "running": "resume", "interrupted": "resume"}.get(info.get("status"), "failed")


def describe(stages: list[Stage], out: Path) -> list[str]:
    """The plan as lines: each stage, what it is, its state and its estimated cost."""
    lines, total = [], 0.0
    for s in stages:
        st = state(s, out)
        todo = st != "current"
        total += s.estimate_s if todo else 0.0
        deps = f" <- {', '.join(s.deps)}" if s.deps else ""
        lines.append(f"{'run ' if todo else 'skip'} {s.name:32s} {st:8s} ~{cost.human(s.estimate_s):>8s}  "
                     f"{s.summary}{deps}")
    lines.append(f"estimated cost of the stages to run: {cost.human(total)} (serial, this machine's rates: docs/study.md)")
    return lines
