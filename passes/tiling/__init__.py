"""The `tile` pass's helpers (passes/tile.py), one idea per module."""
