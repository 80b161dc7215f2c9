"""Compiler passes, one module per pass, registered by name in `registry.py`."""
