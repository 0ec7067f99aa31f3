"""Errors users can cause (bad names, paths, files, runs); the CLI prints them as one line."""


class BiohashError(ValueError):
    """Base of every expected, user-facing error."""


class UnknownNameError(BiohashError, KeyError):
    """A name that is not registered; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DatasetError(BiohashError):
    """A dataset or image could not be opened or is empty; the message names the path or selection."""
