"""Executes one study stage in the current process: a run, a calibration or a comparison.

Each stage writes ``stages/<name>.json`` (its input hash, status ``running`` -> ``done`` |
``failed`` | ``interrupted``, wall time, message) and ``logs/<name>.log`` (what it printed); its
work (a run, calibration or comparison folder) is the folder ``<name>``. ``execute`` is a plain
function of picklable arguments, so a Ray worker process can call it as well.
"""
from __future__ import annotations

import contextlib
import copy
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

import click

from engine.study.plan import Stage, state


def execute(stage: Stage, out: str, arch: str = "cpu", fp: str = "auto", progress: bool = False) -> dict:
    """Run ``stage`` into ``out/<stage.name>``; returns its final ``stages/<name>.json`` dictionary.

    With ``progress`` the stage's progress bar goes to this process's stderr (else to its log)."""
    folder = stage.folder(Path(out))
    before = state(stage, Path(out))
    resume = before == "resume"
    if before in ("stale", "failed", "new") and folder.exists():
        shutil.rmtree(folder)
    for f in (stage.info_file(out), stage.log_file(out)):
        f.parent.mkdir(parents=True, exist_ok=True)
    info = {"stage": stage.name, "kind": stage.kind, "hash": stage.hash, "status": "running",
            "resumed": resume, "estimate_s": stage.estimate_s}
    _write(stage, out, info)
    t0 = time.perf_counter()
    with open(stage.log_file(out), "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(sys.stderr if progress else log):
        try:
            {"run": _run, "calibrate": _calibrate, "compare": _compare}[stage.kind](stage, Path(out), arch, fp, resume,
                                                                                    progress)
            info.update(status="done", message="")
        except KeyboardInterrupt:
            info.update(status="interrupted", message="interrupted by the user")
        except StageFailed as exc:
            info.update(status="failed", message=str(exc))
        except Exception as exc:  # noqa: BLE001 - a stage's bug must not stop independent stages
            traceback.print_exc()
            info.update(status="failed", message=f"{type(exc).__name__}: {exc} (traceback in {stage.log_file(out)})")
    info["wall_s"] = time.perf_counter() - t0
    _write(stage, out, info)
    if info["status"] == "interrupted":
        raise KeyboardInterrupt
    return info


class StageFailed(RuntimeError):
    """A stage that ended with a user-level error (diverged run, bad data): one line."""


def _write(stage: Stage, out: str, info: dict) -> None:
    path = stage.info_file(Path(out))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(path)


def params_file(out: Path, calibration_stage: str) -> Path:
    return Path(out) / calibration_stage / "params.toml"


def _run(stage: Stage, out: Path, arch: str, fp: str, resume: bool, progress: bool) -> None:
    from engine import runfolder
    from engine.case import CaseError, validate
    from engine.driver import Diverged, run
    from kernels import runtime

    p = stage.payload
    data = copy.deepcopy(p["data"])
    if p["params_from"]:
        data["material"].setdefault(p["model"], {})["params"] = str(params_file(out, p["params_from"]).resolve())
    folder = stage.folder(out)
    try:
        case = validate(data, Path(p["case"]))
        used = runtime.init(arch=arch, fp=fp)
        resume = resume and folder.is_dir() and runfolder.latest_checkpoint(folder, case.steps) is not None
        if not resume and folder.exists():
            shutil.rmtree(folder)
        run(case, folder, progress=progress, arch=used, resume=resume)
    except (CaseError, Diverged, runtime.BackendError) as exc:
        raise StageFailed(str(exc)) from None


def _calibrate(stage: Stage, out: Path, arch: str, fp: str, resume: bool, progress: bool) -> None:
    from engine.calibrate_cli import calibrate

    p = stage.payload
    data = out / p["data_from"] / "dataset.h5"
    folder = stage.folder(out)
    common = ["--arch", arch, "--fp", fp, "--progress" if progress else "--no-progress"]
    if resume and (folder / "calibration.json").is_file():
        args = ["--resume", str(folder), *common]
    else:
        if folder.exists():
            shutil.rmtree(folder)
        args = ["--data", str(data), "--out", str(folder), *common, *p["args"]]
    try:
        calibrate.main(args=args, prog_name="engine calibrate", standalone_mode=False)
    except click.ClickException as exc:
        raise StageFailed(f"engine calibrate: {exc.format_message()}") from None
    except SystemExit as exc:
        if exc.code:
            raise StageFailed(_last_error(stage.log_file(out)) or f"engine calibrate exited with {exc.code}") from None


def _last_error(log: Path) -> str:
    """The last ``error: ...`` line a command printed into ``log`` (flushed first)."""
    sys.stderr.flush()
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("error: ")]
    return lines[-1][len("error: "):] if lines else ""


def _compare(stage: Stage, out: Path, arch: str, fp: str, resume: bool, progress: bool) -> None:
    from engine.compare import compare
    from engine.views import RunError

    runs = [out / r for r in stage.payload["runs"]]
    folder = stage.folder(out)
    try:
        result = compare(runs, folder)
    except RunError as exc:
        raise StageFailed(str(exc)) from None
    (folder / "result.json").write_text(json.dumps(result, indent=2, default=str))
