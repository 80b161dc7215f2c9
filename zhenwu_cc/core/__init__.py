"""The bottom layer: facts every other layer may use (diagnostics, dtypes, attribute names)."""
