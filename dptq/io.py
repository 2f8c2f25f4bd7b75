"""Whole-file writes that a reader, or a process killed at any moment, never sees half done.

Standard library only (no torch), so that the leaderboard views can use it without importing the
trainers. Every whole-file write of the project goes through :func:`atomic_file`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

_HOST = socket.gethostname().replace(".", "_") or "host"


@contextlib.contextmanager
def atomic_file(path: Path):
    """A binary file that becomes ``path`` only when the block ends without an error.

    It is written beside ``path`` (``.<name>.<host>.<pid>.tmp``), flushed to disk, then renamed
    over it, and the folder is flushed too so the rename itself is durable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` by ``data`` whole (:func:`atomic_file`)."""
    with atomic_file(path) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)


def write_figure(fig, path: Path, dpi: int) -> Path:
    """A matplotlib figure as a 256-colour palette PNG, written whole: about a third of the
    full-colour file (a report's seven figures: 692 KB -> 249 KB), so a board of hundreds of
    records stays small; no metadata that changes between runs. The caller closes ``fig``."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png", metadata={"Software": None})
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    palette = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    write_atomic(path, out.getvalue())
    return path


def write_json(path: Path, obj, indent: int | None = 1) -> None:
    """``obj`` as JSON (keys sorted, so the same object gives the same bytes), atomically."""
    write_atomic(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n")


def remove_stale_temps(folder: Path) -> None:
    """Delete the temp files that writers on this machine left when killed before their rename.

    A temp file of a live process (a concurrent writer) or of another machine is left alone.
    """
    for tmp in Path(folder).glob(f".*.{_HOST}.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
