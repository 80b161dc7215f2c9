"""The names of the discardable attributes that carry facts between stages: one owner each.

Schedule directives (the front end writes them, the passes read them; docs/language.md):"""

TILE = "zk.tile"  # `#zk.tile<...>` on the op a `tile` directive names
PRECISION = "zk.precision"  # `#zk.precision<...>` on the op or kernel argument it names
PLACE = "zk.place"  # `#zk.place<...>` on the op or kernel argument it names
BUFFERS = "zk.buffers"  # on the kernel: SRAM buffering depth
ACCUMULATE = "zk.accumulate"  # on the kernel: the matmul accumulator type
ACCUMULATE_MODE = "zk.accumulate_mode"  # on the kernel: e.g. `fp8_fast`

# Facts a pass records for later stages and reports:
FLOPS = "zk.flops"  # on the kernel (tile): FLOPs per dtype, for the cost model
QUANTIZED_FROM = "zk.quantized_from"  # on a kernel argument the host fills by quantising
TILE_SIZES = "tile.sizes"  # on a tile.grid / ppu.launch: the tile sizes it runs
HBM = "ppu.hbm"  # `#ppu.hbm<...>` (place-hbm) on arguments and tile.empty / ppu.global

# The SRAM placement contract between alloc-sram (writes) and lower-ppu (reads), on tile values:
SRAM_BUFFER = "sram.buffer"  # which of the grid's buffers
SRAM_OFFSET = "sram.offset"  # byte offset in the CU's SRAM
SRAM_DEPTH = "sram.depth"  # slots (multi-buffering)
SRAM_PLACEMENT = (SRAM_BUFFER, SRAM_OFFSET, SRAM_DEPTH)
SRAM_PEAK = "sram.peak"  # on a tile.grid: its peak SRAM bytes
