"""Command-line programs: `jaxvision-train` (train.py)."""
