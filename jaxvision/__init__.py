"""jaxvision: pure-functional JAX/Flax vision models and training suite.

Distributed as `jaxvision-cnn`; this version string is the only one (pyproject reads it)."""

__version__ = "0.1.0"
