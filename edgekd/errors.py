"""The one exception type users see: the CLI prints its message as a single line and exits non-zero."""


class EdgekdError(Exception):
    """A problem with the user's input or environment, described in one line naming the file and the problem."""
