"""The MLIR-style dialects: `zk` (tensors), `tile` (tiles of a grid), `ppu` (the machine)."""
