"""Target description files (TOML), one per chip."""
