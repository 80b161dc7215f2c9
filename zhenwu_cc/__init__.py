"""zhenwu-cc: a compiler toolchain for AI kernels on the Zhenwu M890 accelerator model."""

__version__ = "0.1.0"
