"""Seeded random weights for architecture presets, without paying for the default init.

Speed does not depend on weight values, so latency and memory at real scale are measured on presets
(``sd15`` …) whose weights are drawn here. Modules are built on the meta device (no memory, no init
kernels) and every parameter is then filled once from a generator seeded by ``(seed, parameter name)``,
so a parameter's values do not depend on build order or on which other components were built.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager

from .._lazy import require
from ..progress import progress_bar


def parameter_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@contextmanager
def empty_weights():
    """Build modules with parameters on the meta device; buffers stay real (position ids etc.)."""
    accelerate = require("accelerate")
    with accelerate.init_empty_weights(include_buffers=False):
        yield


def fill_seeded_(model, seed: int, *, desc: str = "weights", dtype=None, namespace: str = ""):
    """Materialise every meta parameter of ``model`` on the CPU with seeded values, in place.

    Weights of rank >= 2 ~ U(-sqrt(3/fan_in), sqrt(3/fan_in)), i.e. variance 1/fan_in (keeps activations
    O(1) through the residual stacks, so a random model produces finite images; uniform draws are ~2x
    faster than normal ones, which matters for 10^9 parameters); norm scales 1, biases 0. ``namespace``
    prefixes the names the seeds are drawn from (two components with the same parameter names, SDXL's text
    encoders, get different weights).
    """
    torch = require("torch")
    accelerate_utils = require("accelerate.utils")
    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.BatchNorm2d)
    norm_params = {
        f"{mname}.{pname}" if mname else pname
        for mname, module in model.named_modules()
        if isinstance(module, norm_types)
        for pname, _ in module.named_parameters(recurse=False)
    }
    named = list(model.named_parameters())
    total = sum(p.numel() for _, p in named)
    with torch.no_grad(), progress_bar(total=total, desc=desc, unit="param", unit_scale=True) as bar:
        for name, param in named:
            target_dtype = dtype or (param.dtype if param.dtype.is_floating_point else torch.float32)
            value = torch.empty(param.shape, dtype=torch.float32)
            if name in norm_params or param.ndim < 2:
                value.fill_(1.0 if (name in norm_params and name.endswith("weight")) else 0.0)
            else:
                fan_in = math.prod(param.shape[1:])
                gen = torch.Generator().manual_seed(parameter_seed(seed, namespace + name))
                bound = math.sqrt(3.0 / fan_in)
                value.uniform_(-bound, bound, generator=gen)
            accelerate_utils.set_module_tensor_to_device(model, name, "cpu", value=value.to(target_dtype))
            bar.update(param.numel())
    return model
