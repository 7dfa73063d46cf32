"""The live preview: runs for a few frames where a display and Vulkan are available, else skipped."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[2]


def test_gui_without_display_says_so_and_runs_on(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = subprocess.run([sys.executable, "-m", "engine.cli", "run", ROOT / "cases" / "biaxial.toml", "--gui",
                        "--set", "run.steps=5", "--out", tmp_path / "r", "--no-progress"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("--gui")]
    assert lines == ["--gui: no display available (DISPLAY is not set); the run goes on without the window"]
    assert (tmp_path / "r" / "curves.csv").is_file()


@pytest.mark.parametrize("case", ["biaxial.toml", "ctc.toml"])
def test_preview_draws_frames(ti_runtime, tmp_path, case):
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        pytest.skip("no display (set DISPLAY, e.g. Xvfb with a Vulkan driver, to run the GUI path)")
    from engine.case import load_case
    from engine.model import build
    from engine.preview import Preview

    model = build(load_case(ROOT / "cases" / case, ["output.vtk=false"]))
    try:
        preview = Preview(model, "q")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"GGUI cannot open a window here: {exc}")
    fem = model.fem
    for step in range(1, 4):
        fem.step(model.material, model.case.dt, model.case.alpha, model.case.c)
        fem.record_curves()
        preview.add_curve_point(fem.curve_value.to_numpy())
        preview.draw(step, model, fem.state(), save=str(tmp_path / f"f{step}.png") if step == 3 else None)
    from PIL import Image

    img = np.asarray(Image.open(tmp_path / "f3.png").convert("RGB"))
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20
