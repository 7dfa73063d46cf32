"""The tests that cannot run on a backend or precision, by name, each with its reason.

``pytest --arch cuda|vulkan`` (and ``--fp f32`` on the CPU) runs the whole suite; conftest.py skips
the tests named here when their condition holds, printing the reason (``pytest -rs`` lists them).
A name is a pytest node id relative to the repository, ``*`` and ``[...]`` as in fnmatch.
tests/unit/test_backend_skips.py checks that every name still names a test.

Conditions:
    ``vulkan`` -- the test runs in f64, which Taichi's Vulkan backend cannot (kernels.runtime.VULKAN_F64);
    ``gpu``    -- the test checks a CPU-only code path;
    ``f32``    -- the session's precision is f32 (``--fp f32``, or ``auto`` on a GPU) and the test's
                  tolerance is f64 round-off (1e-9 .. 1e-14, or bit-for-bit equality of two f64
                  computations that round differently in f32). ``--arch cuda --fp f64`` runs them on a GPU.

What covers the skipped checks where they cannot run: tests/backends/test_vulkan.py compares Vulkan
f32 with the CPU in f32 (DEM cells short and relaxed paths, FEM steps 2D and 3D, every model's element
test, replayed histories, the calibration bridge's forward and gradient), and
test_dem_physics.py::test_float32_follows_float64 and test_stress_point.py::test_float32_runs bound
the f32 results against f64 on the CPU. Every entry below was run on Vulkan (lavapipe) and on the CPU
with ``--fp f32``: the f32 cases failed alike on both, by f32 rounding (relative differences 1e-8 to
5e-5, the larger ones in DEM stresses, where an overlap of 1e-3 of a radius loses three digits).
"""
from __future__ import annotations

from typing import NamedTuple

F64_ON_VULKAN = "runs in f64, which Vulkan cannot (no 64-bit exp/log/pow); run it with --arch cpu or cuda"
ROUND_OFF = "tolerance is f64 round-off; in f32 rounding alone exceeds it (run with --fp f64)"


class Skip(NamedTuple):
    name: str          # node id pattern
    when: str          # "vulkan" | "gpu" | "f32"
    reason: str


SKIPS = (
    # --- f64 forced inside the test: refused on Vulkan before anything compiles
    Skip("tests/unit/test_cell_flip.py::*", "vulkan",
         "flips checked to f64 round-off against the unflipped cell; " + F64_ON_VULKAN),
    Skip("tests/verification/test_dem_yade.py::*", "vulkan", "YADE comparisons in f64; " + F64_ON_VULKAN),
    Skip("tests/unit/test_dem_physics.py::test_float32_follows_float64", "vulkan",
         "f32 against f64 on one backend; " + F64_ON_VULKAN),
    Skip("tests/unit/test_dem_rve.py::test_batched_cells_equal_single_cell[*-f64]", "vulkan",
         "the f64 case (the f32 case runs); " + F64_ON_VULKAN),
    Skip("tests/unit/test_stress_point.py::test_float32_runs", "vulkan",
         "f32 against f64 on one backend; " + F64_ON_VULKAN),
    # --- CPU-only code paths
    Skip("tests/unit/test_dem_rve.py::test_cell_major_equals_particle_parallel", "gpu",
         "the cell-major step is the CPU path (kernels.runtime.dem_cell_major); a GPU steps particle-parallel"),
    # --- f64 round-off tolerances
    Skip("tests/unit/test_calibrate.py::test_bridge_forward_is_the_fem_integrator", "f32",
         "two integrations agree to 1e-4 Pa in f64; in f32 to 0.4 Pa of 1e5 (" + ROUND_OFF + ")"),
    Skip("tests/unit/test_calibrate.py::test_bridge_gradients_match_finite_differences", "f32",
         "finite differences need f64 (in f32 the difference quotient is rounding noise)"),
    *(Skip(name, "f32", "autodiff against finite differences needs f64 (in f32 the difference quotient is "
                        "rounding noise)")
      for name in ("tests/unit/test_csuh_grad.py::test_csuh_exp_gradients",
                   "tests/unit/test_csuh_grad.py::test_csuh_ts_gradients",
                   "tests/unit/test_csuh_grad.py::test_csuh_other_lode_gradients[*]",
                   "tests/unit/test_ime.py::test_ime_gradients",
                   "tests/unit/test_mcc.py::test_mcc_gradients_with_variable_substeps",
                   "tests/unit/test_mcc.py::test_mcc_ncl_gradients_and_initial_size")),
    Skip("tests/unit/test_calibrate.py::test_refined_paths_equal_the_global_refinement_when_counts_agree", "f32",
         "bit-for-bit in f64; in f32 the two paths differ by 1 ulp (" + ROUND_OFF + ")"),
    Skip("tests/unit/test_calibrate.py::test_recovers_known_parameters_from_synthetic_data", "f32",
         "asks for a thousandfold drop of the misfit; f32 rounding of data and model leaves a floor just "
         "above it (CPU f32: 2.1e-3 of the first misfit, 2e-3 asked)"),
    Skip("tests/unit/test_calibrate_trust.py::test_chunked_gradient_equals_one_chunk", "f32",
         "rtol 1e-10; in f32 the chunks sum in another order (8e-8) (" + ROUND_OFF + ")"),
    Skip("tests/unit/test_dem_contact.py::test_two_spheres_match_yade_reference", "f32",
         "rtol 1e-9 of YADE's f64 forces (" + ROUND_OFF + ")"),
    Skip("tests/unit/test_dem_contact.py::test_normal_force_and_elastic_rebound_across_the_boundary[*]", "f32",
         "rtol 1e-9 of the analytic force; the f32 overlap keeps 2e-6 (" + ROUND_OFF + ")"),
    Skip("tests/unit/test_dem_contact.py::test_coulomb_limit", "f32", "rtol 1e-9 of mu Fn (" + ROUND_OFF + ")"),
    Skip("tests/unit/test_dem_physics.py::test_a_shifted_packing_feels_the_same_contacts[*]", "f32",
         "1e-12 of the stress; shifted f32 positions round differently (4e-5) (" + ROUND_OFF + ")"),
    Skip("tests/unit/test_dem_rve.py::test_initial_stress_and_wave_modulus", "f32",
         "rtol 1e-9 of the packing file's f64 stress; f32 overlaps keep 5e-5 (" + ROUND_OFF + ")"),
    Skip("tests/unit/test_ime.py::test_ime_elastic_start_and_dilation_floor", "f32",
         "rtol 2e-5 of the analytic modulus; f32 gives 4.7e-5 (" + ROUND_OFF + ")"),
    Skip("tests/unit/test_mcc.py::test_mcc_nc_starts_on_yield_surface", "f32",
         "yield function zero to 1e-14 (" + ROUND_OFF + ")"),
    Skip("tests/unit/test_mcc.py::test_mcc_isotropic_bulk_modulus", "f32", "rtol 1e-12 (" + ROUND_OFF + ")"),
    Skip("tests/unit/test_periodic_cell.py::test_homogeneous_deformation_follows_L", "f32",
         "rtol 1e-12 of the exact cell (" + ROUND_OFF + ")"),
    Skip("tests/unit/test_registry.py::test_a_new_model_is_one_registration", "f32",
         "rtol 1e-9 against the exact toy model (" + ROUND_OFF + ")"),
    Skip("tests/unit/test_stress_point.py::test_fem_update_replay_and_autodiff_path_agree", "f32",
         "three integrations agree to rtol 1e-12 in f64 (" + ROUND_OFF + ")"),
    Skip("tests/unit/test_stress_point.py::test_update_snapshot_restore_wave", "f32",
         "the wave modulus to rtol 1e-12 (" + ROUND_OFF + ")"),
    Skip("tests/verification/test_patch.py::test_linear_field_is_exact_to_round_off[*]", "f32",
         "patch test exact to f64 round-off (" + ROUND_OFF + ")"),
    Skip("tests/verification/test_patch.py::test_patch_run_relaxes_to_uniform_strain[*]", "f32",
         "uniform strain to 1e-9 (" + ROUND_OFF + ")"),
    Skip("tests/verification/test_patch.py::test_updated_lagrangian_accumulates_logarithmic_strain", "f32",
         "logarithmic strain to f64 round-off (" + ROUND_OFF + ")"),
    Skip("tests/verification/test_patch.py::test_plane_stress_patch_is_exact", "f32",
         "plane-stress patch exact to f64 round-off (" + ROUND_OFF + ")"),
    Skip("tests/verification/test_patch.py::test_mass_damping_also_relaxes", "f32",
         "relaxed to 1e-9 of the strain (" + ROUND_OFF + ")"),
)


def conditions(arch: str, fp: str) -> set[str]:
    """The conditions that hold for a session on ``arch`` with resolved precision ``fp``."""
    held = set()
    if arch == "vulkan":
        held.add("vulkan")
    if arch != "cpu":
        held.add("gpu")
    if fp == "f32":
        held.add("f32")
    return held


def reason_for(nodeid: str, held: set[str]) -> str | None:
    """Why ``nodeid`` is skipped under the conditions ``held``, or None when it runs."""
    from fnmatch import fnmatchcase

    for s in SKIPS:
        if s.when in held and fnmatchcase(nodeid, s.name.replace("[", "[[]")):
            return f"{s.reason} [tests/backend_skips.py, {s.when}]"
    return None
