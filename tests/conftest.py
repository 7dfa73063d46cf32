import os
import shutil
import tempfile

import pytest

# One Taichi offline cache per test session, shared with the CLI subprocesses: a kernel compiled once
# is loaded from it by later runtimes of the session (measured faster than no cache on a fresh clone),
# and no run depends on the user's cache. TI_OFFLINE_CACHE=0 switches it off.
_CACHE = tempfile.mkdtemp(prefix="engine-tests-ticache-")
os.environ.setdefault("TI_OFFLINE_CACHE_FILE_PATH", _CACHE)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE, ignore_errors=True)


def pytest_addoption(parser):
    parser.addoption("--arch", default="cpu", help="taichi arch for tests: cpu|cuda|vulkan")
    parser.addoption("--fp", default="auto", help="default real precision: auto|f64|f32 (auto: f64 on cpu, f32 on a GPU)")


@pytest.fixture
def ti_runtime(request):
    """A fresh Taichi runtime for one test (see kernels.runtime)."""
    import taichi as ti

    from kernels import runtime

    arch = request.config.getoption("--arch")
    fp = runtime.resolve_fp(arch, request.config.getoption("--fp"))
    if arch != "cpu":
        try:
            runtime.init(arch=arch, fp=fp)
        except Exception as exc:  # pragma: no cover - depends on the machine
            pytest.skip(f"arch {arch} unavailable: {exc}")
    else:
        runtime.init(arch="cpu", fp=fp)
    yield runtime
    if runtime.arch_name() is not None:     # a test may have re-initialised and been refused
        ti.sync()
    runtime.reset()


def pytest_collection_modifyitems(config, items):
    if shutil.which("yade") is None:
        skip = pytest.mark.skip(reason="yade is not installed (apt-get install -y yade)")
        for item in items:
            if "yade" in item.keywords:
                item.add_marker(skip)
    arch = config.getoption("--arch")
    if arch == "cpu":
        skip = pytest.mark.skip(reason="GPU test: run with --arch cuda on a GPU machine")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
    from backend_skips import conditions, reason_for
    from kernels.runtime import resolve_fp

    held = conditions(arch, resolve_fp(arch, config.getoption("--fp")))
    for item in items:
        why = reason_for(item.nodeid, held) if held else None
        if why:
            item.add_marker(pytest.mark.skip(reason=why))
