"""The static cost model over `ppu` programs."""
