"""The one exception type users see: the CLI prints its message as a single line and exits non-zero."""


class EdgekdError(Exception):
    """A problem with the user's input or environment, described in one line naming the file and the problem."""


class NonFiniteEmbeddings(EdgekdError):
    """An artifact gave NaN or infinite embeddings (broken weights, or an FP16 overflow): never scored; the exporter
    catches it to report the artifact as non-finite instead of failing the whole export."""
