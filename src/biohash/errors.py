"""Errors users can cause (bad names, paths, files, runs); the CLI prints them as one line."""


class BiohashError(ValueError):
    """Base of every expected, user-facing error."""


class UnknownNameError(BiohashError, KeyError):
    """A name that is not registered; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DatasetError(BiohashError):
    """A dataset or image could not be opened or is empty; the message names the path or selection."""


class ConfigError(BiohashError):
    """A setting (command-line option, recipe, fit or data config) that is unknown or out of range."""


class MissingFileError(BiohashError, FileNotFoundError):
    """A file or folder the user named (or that a command needs in it) does not exist."""


class FileFormatError(BiohashError):
    """A file biohash wrote (config.yaml, bundle.json) is malformed; the message names the file and the key."""


def check_fields(obj: object, fields: dict[str, type | tuple[type, ...]], source: str,
                 optional: dict[str, type | tuple[type, ...]] | None = None) -> dict:
    """`obj` as a dict with every required field of the right type (and optional ones, where present and not
    null, too); FileFormatError naming `source` and the first wrong key otherwise."""
    if not isinstance(obj, dict):
        what = "empty" if obj is None else f"a {type(obj).__name__}"
        raise FileFormatError(f"{source}: expected a mapping of keys, the file is {what}")
    for key, kind in {**fields, **(optional or {})}.items():
        if key in fields and key not in obj:
            raise FileFormatError(f"{source}: required key {key!r} is missing")
        if obj.get(key) is None and key not in fields:
            continue
        value = obj[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise FileFormatError(f"{source}: key {key!r} must be {names}, got {type(value).__name__}")
    return obj
