"""Double of cuda-python (see tests/doubles/README.md)."""
