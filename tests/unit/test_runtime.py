"""kernels.runtime.init: a GPU backend asked for by name and missing is refused in one line,
never run on the CPU in its place (Taichi itself falls back with only a warning)."""
import pytest

from kernels import runtime


@pytest.mark.parametrize("arch", ["cuda", "vulkan"])
def test_missing_device_is_refused_not_replaced_by_the_cpu(arch):
    try:
        used = runtime.init(arch=arch, fp="f32")
    except runtime.BackendError as exc:
        assert str(exc).startswith(f"--arch {arch}: no {arch} device on this machine") and "\n" not in str(exc)
        assert runtime.arch_name() is None
    else:
        assert used == arch                       # the device is there: it is what runs
    finally:
        runtime.reset()


def test_auto_may_fall_back_to_the_cpu():
    try:
        assert runtime.init(arch="auto", fp="f32") in ("cuda", "vulkan", "metal", "x64", "arm64")
    finally:
        runtime.reset()
