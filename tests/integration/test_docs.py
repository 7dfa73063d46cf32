"""Every command of the ```bash blocks in README.md and docs/*.md runs as written, at a small size.

The blocks of one file run in order in one temporary folder (``cases``, ``assets``, ``studies`` linked from
the repository), so a command may use what an earlier one wrote (a packing, a run folder, a
calibration). ``engine`` commands run in this process through click's runner; ``python -c`` in a
subprocess. Sizes are reduced by appending options (:data:`SMALL`: later ``--set`` keys win, and
so does a repeated click option). A placeholder ``runs/NAME-...`` is the newest ``runs/NAME-*``
folder, as a user would type their run's time stamp; :data:`PLACEHOLDERS` maps the others.
Commands that cannot run here are :data:`EXCEPTIONS`, each with its reason. The FEM-DEM, DEM-cell,
calibration and 3D PTC commands (and those that read their outputs) are marked ``slow``
(:data:`SLOW`, with reasons); ``pytest -m slow tests/integration/test_docs.py`` runs them.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import engine

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
pytest.importorskip("pyvista")

# (pattern in the command, reason): never run here
EXCEPTIONS = [
    ("--arch cuda", "needs a CUDA GPU"),
    ("--gui", "needs a display and Vulkan (tests/integration/test_preview.py covers the window)"),
    ("quick.toml --out study/", "the whole quick study, about 8 minutes (test_study.py runs a tiny study)"),
    ("runs/ctc-...", "resumes the CUDA run of the line before"),
    ("scripts/reduced_cases.sh", "every case with FEM-DEM at reduced scale, about an hour; its engine commands are the documented ones"),
]
# parts of `&&` chains that set up the environment this test already runs in, or run the suite itself
SETUP = ("python3 -m venv", ". .venv/bin/activate", "pip install", "pytest")
# (pattern, reason): slow (FEM-DEM set-up of hundreds of cells, calibration kernels); pytest -m slow
SLOW = [
    ("material.model='dem'", "FEM-DEM on a paper mesh: hundreds of DEM cells"),
    ("fem_dem_small", "FEM-DEM: DEM kernels compile"),
    ("engine rve", "DEM cells: kernels compile"),
    ("engine calibrate", "calibration: gradient kernels compile"),
    ("engine dataset info", "reads the dataset of a FEM-DEM run"),
    ("runs/biaxial-dem", "compares with a FEM-DEM run"),
    ("runs/biaxial-csuh", "runs only for the comparison with a FEM-DEM run"),
    ("cases/ptc.toml", "27,648 Gauss points: set-up and 3D kernels take about 50 s at any step count"),
]
# commands run in both selections: cheap ones writing inputs that slow and fast commands read
BOTH = ("python -c",)
# (pattern, options appended): the first that matches applies; later --set keys and options win
SMALL = [
    ("material.model='dem'", ["--set", "run.steps=1", "--set", "material.dem.packing='assets/packings/disks64_100kPa.npz'",
                              "--set", "material.dem.steps_per_increment=10", "--no-progress"]),
    ("engine run", ["--set", "run.steps=4", "--set", "output.every=2", "--no-progress"]),
    ("engine element", ["--steps", "20"]),
    ("engine rve make", ["--n", "64"]),
    ("engine rve triax", ["--axial-strain", "0.0005"]),
    ("engine rve strain", ["--steps-per-increment", "5"]),
    ("engine calibrate", ["--epochs", "1"]),
    ("engine show", ["--size", "320x240"]),
]
# text in a command -> its replacement (placeholders that are not runs/NAME-...)
PLACEHOLDERS = {"REF_RUN RUN [RUN ...]": "runs/biaxial-... runs/biaxial-..."}


def _synthetic_data(path: Path) -> None:
    """A small ``.npz`` dataset (strain, stress, p0) for the calibration commands that name one."""
    import numpy as np

    strain = np.zeros((4, 6, 3, 3))
    strain[:, :, 1, 1] = -np.linspace(0, 2e-3, 6)
    stress = -1e5 * np.eye(3) + 2e7 * strain
    np.savez(path, strain=strain, stress=stress, p0=1e5)


# files a command needs that no command of the selection writes: name -> writer (a text or a function)
PREREQUISITES = {"calib/params.toml": "[params]\nkappa = 0.045\n", "data.npz": _synthetic_data}


def commands(path: Path) -> list[str]:
    """The shell commands of the ```bash blocks of ``path``: continuation lines joined, `&&` chains
    split (without their :data:`SETUP` parts), comments dropped."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = _strip_comment(line).strip()
            if line:
                out.extend(p.strip() for p in line.split(" && ") if not p.strip().startswith(SETUP))
    return out


def _strip_comment(line: str) -> str:
    """``line`` without a trailing ``# ...`` outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or line[i - 1] == " "):
            return line[:i]
    return line


def _reason(cmd: str, table: list) -> str | None:
    return next((why for pattern, why in table if pattern in cmd), None)


def _plan(marked_slow: bool) -> list:
    """(doc, index, command) of the commands this selection runs."""
    out = []
    for path in DOCS:
        for i, cmd in enumerate(commands(path)):
            out.append(pytest.param(path.name, i, cmd, id=f"{path.name}:{i}",
                                    marks=[pytest.mark.slow] if marked_slow else []))
    return out


def _resolve(cmd: str, work: Path) -> list[str]:
    """The command's words with placeholders replaced and the size reductions appended."""
    for text, repl in PLACEHOLDERS.items():
        cmd = cmd.replace(text, repl)
    words = []
    for w in shlex.split(cmd):
        m = re.match(r"(runs/[\w.]+-)\.\.\.(.*)", w)
        if m:
            found = sorted(work.glob(m.group(1) + "*"), key=lambda p: p.stat().st_mtime)
            found = [p for p in found if (p / m.group(2).lstrip("/")).exists() or not m.group(2)]
            assert found, f"{w}: no earlier command wrote a {m.group(1)}* run folder"
            w = str(found[-1].relative_to(work)) + m.group(2)
        words.append(w)
    small = next((extra for pattern, extra in SMALL if pattern in cmd), [])
    return words + small


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    """One working folder per documentation file, with ``cases`` and ``assets`` linked."""
    made = {}

    def get(doc: str) -> Path:
        if doc not in made:
            work = tmp_path_factory.mktemp(doc.replace(".", "_"))
            for name in ("cases", "assets", "studies"):
                (work / name).symlink_to(ROOT / name)
            made[doc] = work
        return made[doc]
    return get


def _run(words: list[str], work: Path):
    """Run one command in ``work``; (exit code, output)."""
    old = Path.cwd()
    os.chdir(work)
    try:
        if words[0] == "engine":
            if words[1] == "run" and "--out" not in words:
                time.sleep(1.05 - time.time() % 1)           # runs/<case>-<second>: one run per second
            r = engine(*words[1:])
            return r.returncode, r.stdout + r.stderr
        r = subprocess.run([sys.executable if words[0] == "python" else words[0], *words[1:]],
                           capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr
    finally:
        os.chdir(old)


def _check(doc: str, index: int, cmd: str, workdirs, slow: bool) -> None:
    why = _reason(cmd, EXCEPTIONS)
    if why:
        pytest.skip(f"not run: {why}")
    if (_reason(cmd, SLOW) is not None) != slow and not cmd.startswith(BOTH):
        pytest.skip("in the other selection (slow / fast)")
    work = workdirs(doc)
    for name, text in PREREQUISITES.items():
        if re.search(rf"(^|[ =']){re.escape(name)}", cmd) and not (work / name).exists():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            text(work / name) if callable(text) else (work / name).write_text(text)
    code, output = _run(_resolve(cmd, work), work)
    assert code == 0, f"{doc}: `{cmd}` failed (exit {code}):\n{output[-3000:]}"


@pytest.mark.parametrize("doc,index,cmd", _plan(False))
@pytest.mark.slow                   # 40 s of CLI calls; pytest -m slow runs every doc command
def test_doc_command(doc, index, cmd, workdirs):
    _check(doc, index, cmd, workdirs, slow=False)


@pytest.mark.parametrize("doc,index,cmd", _plan(True))
def test_doc_command_slow(doc, index, cmd, workdirs):
    _check(doc, index, cmd, workdirs, slow=True)


def test_the_commands_are_found():
    found = {p.name: commands(p) for p in DOCS}
    assert "engine run cases/ptc.toml --set run.steps=20 --out runs/ptc-quick" in found["README.md"]
    assert any(c.startswith("engine calibrate --data runs/footing-dem/dataset.h5 --model csuh --epochs 500 --lr")
               and "--out calib/" in c for c in found["calibration.md"])      # a continued line, joined
    assert "engine run cases/cavity.toml" in found["README.md"]                # from an && chain
    assert _strip_comment("engine plot runs/x   # PNG plots") == "engine plot runs/x   "
