"""doodle: recognise hand-drawn Quick, Draw! doodles.

The public API re-exports the pieces most users want; each lives in its own module:

* `Drawing`, `Reject`: the in-memory types (`doodle.data.drawing`);
* `read`: stream drawings from any Quick, Draw! file, folder or store (`doodle.data.formats`);
* `simplify`: Google's raw-to-simplified preprocessing (`doodle.data.simplify`);
* `prepare`: build a sharded, shuffled Parquet store (`doodle.data.store`).
"""

from doodle.version import __version__

__all__ = ["__version__", "Drawing", "Reject", "read", "simplify", "prepare"]


def __getattr__(name: str):  # lazy, so `import doodle` stays fast for the CLI
    if name in ("Drawing", "Reject"):
        from doodle.data import drawing

        return getattr(drawing, name)
    if name == "read":
        from doodle.data.formats import read

        return read
    if name == "simplify":
        from doodle.data.simplify import simplify

        return simplify
    if name == "prepare":
        from doodle.data.store import prepare

        return prepare
    raise AttributeError(f"module 'doodle' has no attribute {name!r}")
