"""Double of pycuda (see tests/doubles/README.md)."""
