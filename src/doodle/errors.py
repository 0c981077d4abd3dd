"""Errors meant for the user: the CLI prints their message (no traceback) and exits with status 2."""


class DoodleError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class UnknownFormatError(DoodleError):
    """A file that is not a Quick, Draw! drawing file in any supported format."""
