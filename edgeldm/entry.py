"""How every edgeldm entry point ends (``edgeldm``'s subcommands, the benchmark modules' ``python -m``): an
:class:`~edgeldm.errors.EdgeLDMError` is one line and its exit code, Ctrl-C 130, SIGTERM 143 after the same
cleanup as Ctrl-C, a closed pipe 141, anything else one line (or its traceback when asked)."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from .errors import EdgeLDMError, Terminated

logger = logging.getLogger("edgeldm")

#: set by SIGTERM: a native library can turn the exception raised in Python code it called back (OpenVINO's
#: frontends do) into its own error on the way up; the exit code must still say the run was terminated
_terminated = False


def _raise_terminated(signum, frame):
    global _terminated
    _terminated = True
    raise Terminated()


def _install_sigterm() -> object:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # main() called from a thread (tests)
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _silence_stdout() -> None:
    """After a broken pipe (``edgeldm info --json | head``): nothing more can reach the reader, and Python's
    final flush must not raise again at exit."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def run_guarded(body: Callable[[], int | None], *, verbose: bool = False, tracebacks: bool = False) -> int:
    """Run a command's body the way every edgeldm entry point ends: an :class:`EdgeLDMError` is one line and
    its exit code, Ctrl-C 130, SIGTERM 143 (after the same cleanup), a closed pipe 141, anything else one line
    — or its traceback with ``tracebacks`` (the benchmark modules' ``python -m`` entry points, whose users
    are developers)."""
    global _terminated
    _terminated = False
    previous = _install_sigterm()
    try:
        return _run(body, verbose, tracebacks)
    except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM while an error was being reported
        print("terminated" if isinstance(exc, Terminated) else "interrupted", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


def _run(body: Callable[[], int | None], verbose: bool, tracebacks: bool) -> int:
    try:
        return int(body() or 0)
    except KeyboardInterrupt as exc:
        if _terminated or isinstance(exc, Terminated):
            return _exit_terminated()
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - reported as one line (_report)
        if _terminated:  # SIGTERM's exception, turned into another error by a native library on its way up
            return _exit_terminated()
        return _report(exc, verbose, tracebacks)


def _exit_terminated() -> int:
    print("terminated; nothing half-written was left behind", file=sys.stderr)
    return 143


def _report(exc: Exception, verbose: bool, tracebacks: bool) -> int:
    """An error as one line (and a hint) on stderr, and its exit code; called while it is being handled."""
    if isinstance(exc, EdgeLDMError):
        if verbose:
            logger.exception("edgeldm failed")
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, BrokenPipeError):
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a reader that went away
    if tracebacks:
        raise exc
    from .atomic import describe_os_error, is_disk_full

    if verbose:
        logger.exception("edgeldm failed")
    if is_disk_full(exc):
        print("error: the disk filled up; nothing was written\n  hint: free some space or choose another "
              "output location", file=sys.stderr)
    elif isinstance(exc, OSError):
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
    else:
        print(f"error: {type(exc).__name__}: {_first_line(exc)}", file=sys.stderr)
    if not verbose:
        print("  run with --verbose for the traceback", file=sys.stderr)
    return 1
