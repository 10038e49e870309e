"""One benchmark target per child process.

Each target lives in its own fresh (spawned) process, so that its cold load includes its imports, its
peak resident memory is its own (the OS counts it per process), and two targets compared side by side
run alternately (A B A B …) without sharing caches, thread pools or allocators. The parent sends
commands over a pipe; the child answers with plain data.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback

import numpy as np

from ..errors import EdgeLDMError


def _child(conn, spec: str, config, backends=()) -> None:
    from ..backends import BACKENDS, register_backend
    from .targets import BENCH_PROMPT, make_target
    from .timing import peak_rss_bytes

    for backend in backends:  # the parent's registry, backends registered at run time included (plugins, tests)
        if backend.name not in BACKENDS:
            register_backend(backend)

    target = None
    while True:
        cmd, *args = conn.recv()
        try:
            if cmd == "close":
                conn.send(("ok", None))
                return
            if cmd == "load":
                t0 = time.perf_counter()
                target = make_target(spec, config)
                target.load()
                cold = time.perf_counter() - t0
                conn.send(("ok", {"cold_load_s": cold, "size_bytes": target.size_bytes(),
                                  "describe": target.describe(), "source": str(target.source())}))
            elif cmd == "image":
                (seed,) = args
                target.timer.reset()
                t0 = time.perf_counter()
                image = target.image(BENCH_PROMPT, seed)
                total = time.perf_counter() - t0
                calls = target.timer.calls
                conn.send(("ok", {"image_s": total, "text_encoder_s": sum(sum(v) for k, v in calls.items()
                                                                         if k.startswith("text_encoder")),
                                  "unet_step_s": float(np.mean(calls["unet"])) if calls["unet"] else float("nan"),
                                  "unet_calls": len(calls["unet"]), "vae_decode_s": sum(calls["vae_decoder"]),
                                  "image": image}))
            elif cmd == "memory":
                conn.send(("ok", {"peak_rss_bytes": peak_rss_bytes(),
                                  "components": dict(target.timer.peaks) if target is not None else {}}))
            elif cmd == "generate":
                prompts, seeds = args
                t0 = time.perf_counter()
                images = target.generate(prompts, seeds)
                conn.send(("ok", {"images": images, "seconds": time.perf_counter() - t0}))
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except BaseException as exc:  # report everything to the parent, keep serving (it decides)
            message = str(exc) if isinstance(exc, EdgeLDMError) else f"{type(exc).__name__}: {exc}"
            conn.send(("error", message, traceback.format_exc()))
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                return


class TargetProcess:
    """A target in a spawned child process; methods block until the child answers."""

    def __init__(self, spec: str, config):
        from ..backends import BACKENDS

        self.spec = spec
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child_conn, spec, config, tuple(BACKENDS.values())),
                                 daemon=True,
                                 name=f"edgeldm-bench[{spec}]")
        self._proc.start()
        child_conn.close()

    def _ask(self, *cmd):
        self._conn.send(cmd)
        try:
            status, *payload = self._conn.recv()
        except EOFError:
            raise EdgeLDMError(f"benchmark process for {self.spec} died (exit code {self._proc.exitcode}); "
                               "out of memory?") from None
        if status == "error":
            message, tb = payload
            raise EdgeLDMError(f"{self.spec}: {message}", hint="run with --verbose for the child's traceback") \
                from _ChildTraceback(tb)
        return payload[0]

    def load(self) -> dict:
        return self._ask("load")

    def image(self, seed: int) -> dict:
        return self._ask("image", seed)

    def peak_memory(self) -> dict:
        """``{"peak_rss_bytes": the process's peak, "components": {component: peak during its calls}}``."""
        return self._ask("memory")

    def generate(self, prompts: list[str], seeds: list[int]) -> dict:
        return self._ask("generate", prompts, seeds)

    def close(self) -> None:
        if self._proc.is_alive():
            try:
                self._ask("close")
            except (EdgeLDMError, OSError):
                pass
            self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.terminate()
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _ChildTraceback(Exception):
    """Carries the child's traceback text as the cause of the parent's error (shown with --verbose)."""
