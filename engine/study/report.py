"""``report.md`` of a study: the paper's Tables 6-8 per test case, calibrations, overlaps, pictures.

Every number is read from the stages' files (``run.json``, the comparison's ``errors.csv``,
the calibration's ``summary.json``, the datasets); nothing is typed by hand. A stage that did
not finish appears as such. Errors are those of ``engine compare`` (MAE, peak and post-peak
error of the case's first curve against the FEM-DEM run); the gain of a calibrated surrogate is
MAE(preset surrogate of the same model) / MAE(calibrated); the speed-up of a surrogate is the
FEM-DEM run's wall time over its own.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from engine.study.plan import Stage, read_stage


def write_report(study, stages: list[Stage], out: Path) -> Path:
    """Write ``out/report.md`` (and ``out/report_mae.png``); returns its path."""
    out = Path(out)
    by_name = {s.name: s for s in stages}
    lines = [f"# Study `{study.name}`", "", f"Study file: `{study.path}`.", "", *_stage_table(stages, out), "",
             *_quasistatic_table(stages, out)]
    for c in study.calibrations:
        lines += _calibration_section(c, by_name[f"calibrate-{c.name}"], out)
    maes = {}
    for t in study.tests:
        section, maes[t.name] = _test_section(study, t, by_name, out)
        lines += section
    if any(maes.values()):
        lines += ["![MAE of every surrogate per test case](report_mae.png)", ""]
        _mae_plot(maes, out / "report_mae.png")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _stage_table(stages: list[Stage], out: Path) -> list[str]:
    rows = ["## Stages", "", "| stage | status | wall time / s | estimate / s |", "|---|---|---|---|"]
    for s in stages:
        info = read_stage(s, out) or {}
        wall = info.get("wall_s")
        status = info.get("status", "not run") + (f": {info['message']}" if info.get("message") else "")
        rows.append(f"| {s.name} | {status} | {'' if wall is None else f'{wall:.1f}'} | {s.estimate_s:.0f} |")
    return rows


def quasistatic_evidence(run_dir: Path) -> dict | None:
    """The engine's own quasi-static measures of a FEM-DEM run folder, or None if it has none.

    ``energy``: the largest kinetic/internal energy ratio at the frames after the first
    ``WARMUP`` of the steps (what the run warns about); ``inertia_frames``: the largest inertia
    number at the frames (idem); ``inertia_steps`` and ``above``: the largest at any macro step and
    the share of the steps above ``MAX_INERTIA`` (``run.json: cells.inertia_max``, every step);
    ``loose``: the most loose cells at once; ``capped``: capped cell-steps in all."""
    from engine.quasistatic import MAX_INERTIA, QUASISTATIC, WARMUP

    info = _json(run_dir / "run.json")
    if not info or not info.get("cells"):
        return None
    cells, steps = info["cells"], info.get("steps_requested") or info.get("steps_done") or 1
    warm = max(1, int(WARMUP * steps))
    frames = []
    try:
        with open(run_dir / QUASISTATIC, newline="") as f:
            frames = [r for r in csv.DictReader(f) if int(r["step"]) > 0]
    except OSError:
        pass
    inertia = [float(v) for v in cells.get("inertia_max", [])]
    limit = (info.get("case") or {}).get("run", {}).get("max_energy_ratio", 0.05)
    return {"steps": info.get("steps_done"), "frames": len(frames), "limit": limit, "max_inertia": MAX_INERTIA,
            "energy": max([float(r["energy_ratio"]) for r in frames if int(r["step"]) >= warm], default=float("nan")),
            "inertia_frames": max([float(r["inertia_max"]) for r in frames], default=float("nan")),
            "inertia_steps": max(inertia, default=float("nan")),
            "above": sum(v > MAX_INERTIA for v in inertia) / max(1, len(inertia)),
            "loose": max(cells.get("loose", [0]), default=0), "capped": sum(cells.get("capped", []))}


def _percent(share: float) -> str:
    p = 100 * share
    return f"{p:.0f}" if p == 0 or p >= 10 else f"{p:.2g}"


def _quasistatic_table(stages: list[Stage], out: Path) -> list[str]:
    """Per FEM-DEM run: the measures by which the engine judges a run quasi-static (docs/cases.md)."""
    rows = []
    for s in stages:
        if s.kind != "run" or s.meta.get("model") != "dem":
            continue
        q = quasistatic_evidence(s.folder(out))
        if q is None:
            rows.append(f"| {s.name} | not run | | | | | | |")
            continue
        fails = [what for what, bad in (("kinetic energy", q["energy"] > q["limit"]),
                                         ("inertia number", q["inertia_frames"] > q["max_inertia"])) if bad]
        verdict = "yes" if not fails else "no: " + ", ".join(fails)
        rows.append(f"| {s.name} | {q['steps']} | {q['energy']:.3g} | {q['inertia_frames']:.2g} | "
                    f"{q['inertia_steps']:.2g} ({_percent(q['above'])} % of the steps above {q['max_inertia']:g}) | "
                    f"{q['loose']} | {q['capped']} | {verdict} |")
    if not rows:
        return []
    return ["## Are the FEM-DEM runs quasi-static?", "",
            "The engine's own measures (docs/cases.md, \"Quasi-static runs\"): the largest kinetic/internal "
            "energy ratio at the frames after the first 5 % of the steps (limit `run.max_energy_ratio`), the "
            "largest inertia number of the cells at the frames (limit 1e-3) and at any macro step, the most "
            "loose cells at once and the capped cell-steps. The verdict is the run's own (its warnings).", "",
            "| run | steps | KE/IE | inertia number (frames) | inertia number (every step) | loose (most) | "
            "capped (cell-steps) | quasi-static |", "|---|---|---|---|---|---|---|---|", *rows, ""]


def _calibration_section(c, stage: Stage, out: Path) -> list[str]:
    from kernels import registry

    folder = stage.folder(out)
    summary = _json(folder / "summary.json")
    lines = [f"## Calibration `{c.name}`", "",
             f"{c.model} on the dataset of `train-{c.train}`, {c.optimizer}, {c.epochs} epochs, split "
             f"{'/'.join(f'{v:g}' for v in c.split)}, seed {c.seed}" + (f", scheme {c.scheme}" if c.scheme else "") + ".", ""]
    if summary is None:
        return lines + ["Not finished: no summary.json.", ""]
    lines += [f"Best validation misfit {summary['best_val_loss']:.4g} at epoch {summary['best_epoch']}, test misfit "
              f"{summary['test_loss']:.4g}, {summary['epochs_run']} epochs in {summary['wall_s']:.1f} s.", "",
              "| parameter | initial | calibrated | lower bound | upper bound |", "|---|---|---|---|---|"]
    schema = registry.get(c.model).schema
    bounds = {p.name: p.bounds for p in schema.params}
    for k, v in summary["params"].items():
        lo, hi = bounds.get(k, (None, None)) or (None, None)
        lines.append(f"| {k} | {summary['initial'][k]:.5g} | {v:.5g} | {_num(lo)} | {_num(hi)} |")
    lines.append("")
    for png, what in (("loss.png", "loss curves"), ("params.png", "parameters against their bounds")):
        if (folder / png).is_file():
            lines += [f"![{c.name}: {what}]({stage.name}/{png})", ""]
    return lines


def _num(v) -> str:
    return "" if v is None else f"{v:.4g}"


def _errors(stage: Stage, out: Path) -> dict:
    path = stage.folder(out) / "errors.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row["run"]: row for row in csv.DictReader(f)}


def _test_section(study, t, by_name: dict, out: Path) -> tuple[list[str], dict]:
    ref = by_name[f"test-{t.name}-dem"]
    runs = [ref] + [by_name[f"test-{t.name}-{s}"] for s in t.surrogates]
    cmp = by_name[f"compare-{t.name}"]
    errors = _errors(cmp, out)
    info = {r.name: _json(r.folder(out) / "run.json") for r in runs}
    ref_wall = (info[ref.name] or {}).get("timings", {}).get("total_s")
    quantity = next(iter(errors.values()))["quantity"] if errors else "the first curve"
    lines = [f"## Test `{t.name}`", "", f"Case `{t.case.name}`; errors of `{quantity}` against `{ref.name}` "
             f"(units of the curve; `engine compare` in `{cmp.name}/`).", "",
             "| Methods | Gauss points | Total steps | Running time / s | Speed-up | Overall MAE | Peak error | Post-peak error |",
             "|---|---|---|---|---|---|---|---|"]
    maes = {}
    for r in runs:
        i = info[r.name]
        if i is None:
            lines.append(f"| {r.name} | not run | | | | | | |")
            continue
        wall = i.get("timings", {}).get("total_s")
        speed = f"{ref_wall / wall:.3g}" if (ref_wall and wall and r is not ref) else "\\"
        e = errors.get(r.name)
        errs = [f"{float(e[k]):.4g}" for k in ("mae", "peak_error", "post_peak_error")] if e else ["\\"] * 3
        if e:
            maes[r.name[len(f'test-{t.name}-'):]] = float(e["mae"])
        lines.append(f"| {r.name} ({i.get('status')}) | {i['mesh']['gauss_points']} | {i['steps_done']} | "
                     f"{'' if wall is None else f'{wall:.1f}'} | {speed} | " + " | ".join(errs) + " |")
    lines += ["", *_gains(study, t, maes), *_overlaps(study, runs, out), *_pictures(cmp, out)]
    return lines, maes


def _gains(study, t, maes: dict) -> list[str]:
    lines = []
    surrogates = {s.name: s for s in study.surrogates if s.name in t.surrogates}
    for s in surrogates.values():
        if s.calibration is None or s.name not in maes:
            continue
        for base in surrogates.values():
            if base.calibration is None and base.model == s.model and maes.get(base.name):
                lines.append(_gain_line(s.name, base.name, maes[base.name], maes[s.name]))
    return lines + ([""] if lines else [])


def _gain_line(name: str, base: str, mae_base: float, mae: float) -> str:
    """The gain MAE(base) / MAE(calibrated) in words: above 1 the calibration helped."""
    if mae == 0:
        return f"- `{name}` matches the reference exactly (`{base}`: MAE {mae_base:.4g})"
    gain = mae_base / mae
    verdict = "the calibration helped" if gain > 1 else "the calibration made it worse"
    return f"- gain of `{name}` over `{base}`: MAE {mae_base:.4g} -> {mae:.4g}, gain {gain:.3g} ({verdict})"


def _overlaps(study, runs: list[Stage], out: Path) -> list[str]:
    """Overlap of every test run with every training dataset of the same dimension (2D / 3D)."""
    from engine.compare_points import loading_overlap
    from engine.dataset import read_dataset

    trains = [(t.name, out / f"train-{t.name}") for t in study.train]
    trains = [(n, p) for n, p in trains if (p / "dataset.h5").is_file()]
    if not trains:
        return []
    lines = ["Loading-space overlap with the training data (Jaccard index of occupied (p, q) bins; in-plane "
             "invariants in 2D):", "", "| run | " + " | ".join(n for n, _ in trains) + " |", "|---|" + "---|" * len(trains)]
    data = {n: (read_dataset(p / "dataset.h5"), _is_3d(p)) for n, p in trains}
    for r in runs:
        path = r.folder(out) / "dataset.h5"
        if path.is_file():
            d, dim3 = read_dataset(path), _is_3d(r.folder(out))
            cells = [_overlap(loading_overlap, data[n][0], d) if data[n][1] == dim3 else "(2D / 3D)" for n, _ in trains]
            lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _is_3d(run_dir: Path) -> bool:
    return (_json(run_dir / "run.json") or {}).get("kinematics") == "3d"


def _overlap(measure, a: dict, b: dict) -> str:
    from engine.views import RunError

    try:
        return f"{measure(a, b):.3f}"
    except (RunError, ValueError) as exc:
        return f"not defined ({exc})"


def _pictures(cmp: Stage, out: Path) -> list[str]:
    folder = cmp.folder(out)
    pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
    return [f"![{p.stem}]({cmp.name}/{p.name})" for p in pngs] + ([""] if pngs else [])


def _mae_plot(maes: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tests = [t for t in maes if maes[t]]
    names = sorted({s for t in tests for s in maes[t]})
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(tests), 3.6), constrained_layout=True)
    w = 0.8 / max(1, len(names))
    for k, s in enumerate(names):
        ax.bar(np.arange(len(tests)) + k * w, [maes[t].get(s, np.nan) for t in tests], w, label=s)
    ax.set_xticks(np.arange(len(tests)) + 0.4 - w / 2, tests)
    ax.set_ylabel("MAE against FEM-DEM")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
