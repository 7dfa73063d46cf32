"""Granular multiscale engine: explicit FEM with DEM RVEs or constitutive surrogates."""
__version__ = "0.1.0"
