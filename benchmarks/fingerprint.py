"""Which machine a figure came from: the device fingerprint stored with every benchmark run.

Latency only compares within one fingerprint, so the history is keyed by :func:`fingerprint_id`: a short
hash of the fields that change latency (CPU, cores, threads, OS, backend, device, GPU) but not of
library versions, which are recorded so a regression can be traced to an upgrade.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata

#: distributions whose versions go into every fingerprint
TOOLCHAIN = ("edgeldm", "torch", "diffusers", "onnxruntime", "openvino", "coremltools", "optimum", "numpy")
#: fields that identify a device; a change in any of them starts a new history
IDENTITY_FIELDS = ("cpu", "cores", "threads", "os", "machine", "backend", "device", "gpu")


def cpu_model() -> str:
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or platform.processor()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """The first NVIDIA GPU by ``nvidia-smi``, without importing torch (runtime targets must not need it)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
    return names[0] if out.returncode == 0 and names else None


def versions(names=TOOLCHAIN) -> dict[str, str | None]:
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


#: instruction-set extensions INT8 speed depends on (VNNI dot products, AMX tiles) and the vector widths
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "asimddp", "i8mm")


def cpu_int8_extensions() -> list[str]:
    """Which of :data:`INT8_FLAGS` this CPU reports (Linux /proc/cpuinfo; macOS sysctl; else empty)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags.update(line.split(":", 1)[1].split())
    except OSError:
        import subprocess

        try:
            out = subprocess.run(["sysctl", "-a"], capture_output=True, text=True, timeout=5).stdout
            flags.update(k.rsplit(".", 1)[-1].lower().replace("feat_", "") for k, v in
                         (line.split(":", 1) for line in out.splitlines() if ":" in line) if v.strip() == "1")
        except (OSError, subprocess.SubprocessError):
            pass
    return [f for f in INT8_FLAGS if f in flags]


def device_fingerprint(*, backend: str, device: str, threads: int | None) -> dict:
    """Everything that explains a latency figure: hardware, threads used, OS, Python, toolchain, backend."""
    fp = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "backend": backend,
        "device": device,
        "gpu": gpu_name(),
        "isa": cpu_int8_extensions(),
        "versions": versions(),
    }
    fp["id"] = fingerprint_id(fp)
    return fp


def fingerprint_id(fp: dict) -> str:
    """``<slug>-<hash>``: readable in a folder listing, unique per device identity."""
    identity = {k: fp.get(k) for k in IDENTITY_FIELDS}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    slug = re.sub(r"[^a-z0-9]+", "-", f"{fp.get('backend')}-{fp.get('device')}-{fp.get('cpu')}".lower()).strip("-")
    return f"{slug[:48]}-{digest}"


def emit_result(result: dict, script: str, argv, *, backend: str, threads: int | None, json_path=None) -> None:
    """What every benchmark script ends with: the command and device stamped in, JSON printed and saved."""
    import sys
    from pathlib import Path

    result["command"] = f"python -m edgeldm.benchmarks.{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    result["device"] = device_fingerprint(backend=backend, device="cpu", threads=threads)
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if json_path:
        Path(json_path).write_text(text + "\n")
