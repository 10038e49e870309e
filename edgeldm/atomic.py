"""Outputs appear complete or not at all.

Everything edgeldm writes goes into a hidden temporary folder beside the destination and is renamed
into place when complete (a rename within one filesystem is atomic). An existing output is replaced
only with ``overwrite=True``; a failure — a full disk included — removes the temporary folder and
leaves the previous output, and the user's input, untouched.

Temporary names carry the writer's process id (``.NAME.tmp-<pid>-*``), so the next run into the same place
removes what a killed run (SIGKILL, a power cut) left behind, and never the folder of a writer still alive.
Outputs get the permissions the umask gives any new file (``tempfile`` alone would make them owner-only).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import EdgeLDMError, OutputExistsError

logger = logging.getLogger("edgeldm")
_STALE = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)(?:-.*)?$")


class OutputError(EdgeLDMError):
    """An output path cannot be written: read-only, no permission, a folder where a file goes, or the reverse."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _chmod_default(path: Path, *, folder: bool) -> None:
    """What ``open`` / ``mkdir`` would have given: 0666 / 0777 less the umask."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's, or no pid at all: not ours to judge
        return True
    return True


def remove_stale_temporaries(dest: Path) -> list[Path]:
    """Remove what an interrupted writer of ``dest`` left beside it (its process gone); restore a previous
    output that a run killed between its two renames left only as ``.NAME.old-<pid>``."""
    removed = []
    if not dest.parent.is_dir():
        return removed
    for entry in dest.parent.iterdir():
        m = _STALE.match(entry.name)
        if not m or m["name"] != dest.name or _pid_alive(int(m["pid"])):
            continue
        if ".old-" in entry.name and not dest.exists() and not dest.is_symlink():
            os.replace(entry, dest)
            logger.warning("restored %s from %s (a run was interrupted while replacing it)", dest, entry.name)
            continue
        _remove(entry)
        removed.append(entry)
        logger.info("removed %s, left by an interrupted run", entry)
    return removed


def _refuse_inside_inputs(dest: Path, protect) -> None:
    for src in protect:
        src = Path(src).expanduser().absolute()
        if dest == src or src in dest.parents:
            raise EdgeLDMError(f"output {dest} is inside the input {src}; edgeldm never writes into its input",
                               hint="choose an output folder outside the input checkpoint")


def is_disk_full(exc: BaseException) -> bool:
    """An ENOSPC / EDQUOT, also as libraries wrap it (safetensors' SafetensorError, torch's writer)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if "No space left on device" in text or "os error 28" in text or "Disk quota exceeded" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _disk_full(path) -> EdgeLDMError:
    return EdgeLDMError(f"the disk filled up while writing {path}; nothing was written",
                        hint="free some space or choose another output location")


def check_appendable_folder(path: str | os.PathLike) -> Path:
    """A folder that outputs are added to (a bench history): it or its nearest existing parent writable."""
    dest = Path(path).expanduser().absolute()
    if dest.exists() and not dest.is_dir():
        raise OutputError(f"{dest} is a file; a folder is needed here")
    if not dest.is_dir():
        return check_output(dest, folder=True)
    _probe(dest, dest)
    return dest


def _probe(folder: Path, dest: Path) -> None:
    try:  # the only honest test: write something (os.access says yes to root on a read-only mount)
        probe = tempfile.mkdtemp(prefix=f".{dest.name}.tmp-{os.getpid()}-probe-", dir=folder)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputError(f"cannot write {dest}: {describe_os_error(exc, folder)}",
                          hint="choose an output in a folder you can write to") from None


def check_output(path: str | os.PathLike, *, folder: bool, overwrite: bool = False,
                 protect: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Fail now, before any work, if ``path`` cannot become the output: it is or lies inside an input
    (``protect``), it exists (without ``overwrite``), it is a folder where a file goes or the reverse, or its
    parent cannot be created or written to."""
    if not folder and str(path).endswith(("/", os.sep)):
        raise OutputError(f"{path} ends with a separator, but the output is a file", hint="drop the trailing /")
    dest = Path(path).expanduser().absolute()
    _refuse_inside_inputs(dest, protect)
    remove_stale_temporaries(dest)  # a previous output restored first counts as existing below
    kind = "folder" if folder else "file"
    if os.path.lexists(dest) and not dest.is_symlink() and not dest.is_dir() and not dest.is_file():
        raise OutputError(f"{dest} is a device, pipe or socket, not a {kind}; edgeldm replaces only files and "
                          "folders", hint="write to a regular file ('-' prints a document to stdout where offered)")
    if os.path.lexists(dest):
        if not overwrite:
            raise OutputExistsError(f"{dest} already exists", hint="pass --overwrite to replace it, or choose "
                                                                   "another output")
        if dest.is_dir() != folder:
            raise OutputError(f"{dest} is a {'folder' if dest.is_dir() else 'file'}; the output is a {kind}, and "
                              f"--overwrite replaces only a {kind}", hint="choose another output, or remove it")
    parent = dest.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {dest}: {parent} is a file, not a folder")
    _probe(parent, dest)
    return dest


def describe_os_error(exc: OSError, path=None) -> str:
    """One line for an ``OSError`` a user can act on."""
    where = path if path is not None else (exc.filename or "")
    reasons = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
               errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on the disk",
               errno.EDQUOT: "disk quota exceeded", errno.EISDIR: "is a folder, not a file",
               errno.ENOTDIR: "a part of the path is a file, not a folder", errno.ENOENT: "no such file or folder",
               errno.ENAMETOOLONG: "file name too long", errno.EEXIST: "already exists"}
    reason = reasons.get(exc.errno, exc.strerror or str(exc))
    return f"{where}: {reason}" if where else reason


class _SignalsDeferred:
    """Hold SIGINT / SIGTERM while the previous output is moved aside and the new one into place, so an
    interruption cannot fall between the two renames (where neither would be at the destination)."""

    def __enter__(self):
        self.blocked = hasattr(signal, "pthread_sigmask")
        if self.blocked:
            self.old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        return self

    def __exit__(self, *exc):
        if self.blocked:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.old)
        return False


@contextmanager
def atomic_output_dir(destination: str | os.PathLike, *, overwrite: bool = False,
                      protect: tuple[str | os.PathLike, ...] = ()) -> Iterator[Path]:
    """Yield a temporary folder; on success it becomes ``destination``.

    ``protect`` lists input paths the output must not be, or live inside (never write into the input).
    """
    dest = check_output(destination, folder=True, overwrite=overwrite, protect=protect)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-{os.getpid()}-", dir=dest.parent))
    try:
        yield tmp
        for sub in [tmp, *tmp.rglob("*")]:  # libraries write some files owner-only (safetensors: 0600)
            if not sub.is_symlink():
                _chmod_default(sub, folder=sub.is_dir())
        with _SignalsDeferred():
            if dest.exists():
                backup = dest.with_name(f".{dest.name}.old-{os.getpid()}")
                os.replace(dest, backup)
                os.replace(tmp, dest)
                _remove(backup)
            else:
                os.replace(tmp, dest)
    except BaseException as exc:
        _remove(tmp)
        if is_disk_full(exc):
            raise _disk_full(dest) from exc
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write one file through a temporary file beside it; a full disk leaves the previous file as it was."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; the output is a file", hint="choose another output")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.absolute())
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _chmod_default(Path(tmp), folder=False)
        os.replace(tmp, path)
    except BaseException as exc:
        _remove(Path(tmp))
        if is_disk_full(exc):
            raise _disk_full(path) from exc
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def png_bytes(image) -> bytes:
    """A PIL image (or uint8 HWC array) encoded as PNG."""
    return image_bytes(image, ".png")


def image_bytes(image, suffix: str = ".png") -> bytes:
    """A PIL image (or uint8 HWC array) encoded in the format PIL registers for ``suffix`` (.png, .jpg, ...)."""
    import io

    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    fmt = Image.registered_extensions().get(suffix.lower(), "PNG")
    if fmt == "JPEG" and image.mode != "RGB":
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    return buf.getvalue()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
