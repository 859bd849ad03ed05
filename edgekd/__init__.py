"""edgekd: train, distill, export and re-measure face-verification models on the deployed artifact."""

__version__ = "0.1.0"
