"""Every quantized graph against its fp32 graph: component-output PSNR on held-out captured inputs, image PSNR
on fixed prompts through the runtime. Both go into the manifest; the first gates (``--min-psnr``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...exporters.validation import cosine, tensor_psnr


def can_run(backend: str) -> str | None:
    """None when this machine can run ``backend``'s graphs, else the reason it cannot."""
    from ...backends import get_backend

    return get_backend(backend).skip_reason()


def graph_parity(backend: str, reference: Path, candidate: Path, io, calib, component: str, *,
                 limit: int = 16, session_config: dict | None = None,
                 reference_session_config: dict | None = None) -> dict:
    """Outputs of ``candidate`` vs ``reference`` on held-out captured inputs of ``component``.

    PSNR pools the squared error over all inputs, with the reference outputs' range as the peak. ``session_config``:
    the candidate's session settings (a scheme's ``session_config``), as the runtime will load it;
    ``reference_session_config`` the reference's (none: a fp32 graph's defaults).
    """
    from ...runtimes.backends import open_session

    ref_s = open_session(backend, reference, io,
                         **({"session_config": reference_session_config} if reference_session_config else {}))
    cand_s = open_session(backend, candidate, io, **({"session_config": session_config} if session_config else {}))
    _, (start, count) = calib.split(component)
    refs, cands = [], []
    for inputs in calib.iter_inputs(component, min(count, limit), start=start, count=count):
        name = io.output_names[0]
        refs.append(ref_s(**inputs)[name])
        cands.append(cand_s(**inputs)[name])
    if not refs:
        return {"inputs": 0}
    ref, cand = np.stack(refs), np.stack(cands)
    psnr = tensor_psnr(ref, cand)
    return {"inputs": len(refs), "psnr_db": psnr if math.isfinite(psnr) else 999.0,
            "max_abs_diff": float(np.max(np.abs(ref.astype(np.float64) - cand))), "cosine": cosine(ref, cand)}


def image_parity(backend: str, reference_bundle: Path, candidate_bundle: Path, prompts: list[str], *,
                 seed: int = 0) -> dict:
    """Images of the quantized bundle vs the fp32 bundle (same backend, prompts, seeds, sampler defaults)."""
    from ...benchmarks.quality import psnr
    from ...runtimes.text2image import Text2Image

    ref, cand = Text2Image(reference_bundle, backend=backend), Text2Image(candidate_bundle, backend=backend)
    a = np.stack([ref.decode(ref.latents(p, seed=seed + i)) for i, p in enumerate(prompts)])
    b = np.stack([cand.decode(cand.latents(p, seed=seed + i)) for i, p in enumerate(prompts)])
    values = [min(float(v), 999.0) for v in psnr(a, b)]
    return {"prompts": len(prompts), "psnr_db_mean": float(np.mean(values)), "psnr_db_min": float(np.min(values))}
