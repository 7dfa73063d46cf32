"""One calibration as a job: its settings stored in its out folder, run or resumed in this process.

``OUT/calibration.json`` holds the job (data file and its SHA-256, start parameters, optimiser
settings, point selection) from the first run on; ``OUT/checkpoint.pt`` the state after the last
checkpointed epoch (``calibrate.checkpoint``). :func:`execute` runs a job on a dataset already read
(``engine.calibrate_cli.run_calibration`` reads it and is the entry point for in-process callers).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from calibrate import checkpoint
from calibrate.report import contributions, plot_contributions
from calibrate.selection import Selection
from calibrate.train import Calibration, Settings, prepare_data

JOB_FILE = "calibration.json"


@dataclass
class Job:
    """A calibration: ``data`` (dataset path), ``out`` (folder), ``init`` (start parameters by name),
    ``settings`` (optimiser, schedules, options) and ``selection`` (points and weights)."""
    data: str
    out: str
    init: dict
    settings: Settings = field(default_factory=Settings)
    selection: Selection = field(default_factory=Selection)

    def to_json(self, digest: str) -> dict:
        s = {**asdict(self.settings), "split": list(self.settings.split)}
        return {"data": str(self.data), "data_sha256": digest, "init": dict(self.init), "settings": s,
                "selection": self.selection.to_json()}


def file_digest(path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _tuple(v):
    return tuple(v) if isinstance(v, list) else v


def load_job(out) -> tuple[Job, str]:
    """The job stored in ``out`` and the SHA-256 of its data; FileNotFoundError naming the file."""
    path = Path(out) / JOB_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; --resume needs the out folder of a calibration")
    d = json.loads(path.read_text())
    settings = Settings(**{k: _tuple(v) if k == "split" else v for k, v in d["settings"].items()})
    selection = Selection(**{k: _tuple(v) for k, v in d["selection"].items()})
    return Job(d["data"], str(out), d["init"], settings, selection), d["data_sha256"]


def execute(job: Job, raw: dict, resume: bool = False, progress: bool = False,
            stop_after: int | None = None, digest: str | None = None) -> dict:
    """Run (or, with ``resume``, continue from its checkpoint) the calibration ``job`` on the dataset
    ``raw`` (dict of ``engine.dataset.read_dataset``); writes params.toml, history.csv, summary.json,
    the plots and the checkpoint into ``job.out``. Returns the summary (``failure``: one line or None;
    ``interrupted``: stopped before ``epochs``; ``files``: what was written)."""
    out = Path(job.out)
    state = checkpoint.load(out / checkpoint.NAME) if resume else None
    data = prepare_data(raw, job.settings.stride, job.selection)
    cal = Calibration(data, job.init, job.settings)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        digest = digest or file_digest(job.data)
        (out / JOB_FILE).write_text(json.dumps(job.to_json(digest), indent=2))
    cal.checkpoint_path = out / checkpoint.NAME
    result = cal.run(progress=progress, resume=state, stop_after=stop_after)
    result["selection"] = {**job.selection.to_json(), "points": int(len(data.strain))}
    files = []
    try:
        result["dominant_points"] = contributions(cal, raw)
        files += plot_contributions(result["dominant_points"], raw, out)
    except Exception as exc:          # noqa: BLE001 - the report must not hide the parameters
        result["dominant_points"] = {"error": f"{type(exc).__name__}: {exc}"}
    files = cal.write(out, result) + files
    result["files"] = [str(f) for f in files]
    return result
