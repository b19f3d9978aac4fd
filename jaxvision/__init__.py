"""jaxvision: pure-functional JAX/Flax vision models and training suite."""

__version__ = "0.1.0"
