"""A clone's shim for `python -m train`; not part of the installed package."""
