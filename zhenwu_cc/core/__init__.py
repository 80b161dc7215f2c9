"""The bottom layer: facts every other layer shares (diagnostics, dtypes, the target model,
shapes, tiling, the quantisation scheme, attribute names). Modules here import nothing of ours
above core."""
