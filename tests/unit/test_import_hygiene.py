"""Importing the packages neither initialises Taichi nor allocates fields."""
import subprocess
import sys


def test_imports_do_not_initialise_taichi():
    code = ("import taichi as ti, pkgutil, importlib\n"
            "import engine, kernels, materials, calibrate\n"
            "for pkg in (kernels, materials, calibrate):\n"
            "    for m in pkgutil.iter_modules(pkg.__path__):\n"
            "        importlib.import_module(pkg.__name__ + '.' + m.name)\n"
            "import engine.cli, engine.model, engine.driver\n"
            "from taichi.lang import impl\n"
            "print('INIT', impl.get_runtime().prog is not None)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "INIT False" in r.stdout
