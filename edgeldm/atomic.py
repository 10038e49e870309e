"""Outputs appear complete or not at all.

Everything edgeldm writes goes into a hidden temporary folder beside the destination and is renamed
into place when complete (a rename within one filesystem is atomic). An existing output is replaced
only with ``overwrite=True``; a failure — a full disk included — removes the temporary folder and
leaves the previous output, and the user's input, untouched.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import EdgeLDMError, OutputExistsError


@contextmanager
def atomic_output_dir(destination: str | os.PathLike, *, overwrite: bool = False,
                      protect: tuple[str | os.PathLike, ...] = ()) -> Iterator[Path]:
    """Yield a temporary folder; on success it becomes ``destination``.

    ``protect`` lists input paths the output must not be, or live inside (never write into the input).
    """
    dest = Path(destination).expanduser().absolute()
    for src in protect:
        src = Path(src).expanduser().absolute()
        if dest == src or src in dest.parents:
            raise EdgeLDMError(f"output {dest} is inside the input {src}; edgeldm never writes into its input",
                               hint="choose an output folder outside the input checkpoint")
    if dest.exists() and not overwrite:
        raise OutputExistsError(f"{dest} already exists", hint="pass --overwrite to replace it, or choose another output")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
        if dest.exists():
            backup = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, backup)
            os.replace(tmp, dest)
            _remove(backup)
        else:
            os.replace(tmp, dest)
    except OSError as exc:
        _remove(tmp)
        if exc.errno == errno.ENOSPC:
            raise EdgeLDMError(f"the disk filled up while writing {dest}; nothing was written",
                               hint="free some space or choose another output location") from exc
        raise
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write one file through a temporary file beside it; a full disk leaves the previous file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(Path(tmp))
        if exc.errno == errno.ENOSPC:
            raise EdgeLDMError(f"the disk filled up while writing {path}; nothing was written",
                               hint="free some space or choose another output location") from exc
        raise
    except BaseException:
        _remove(Path(tmp))
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def png_bytes(image) -> bytes:
    """A PIL image (or uint8 HWC array) encoded as PNG."""
    import io

    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
