"""Double of cuda-python's cuda.bindings."""
