"""LD-Pruner's task-agnostic operator score (Castells et al., CVPRW 2024).

Generate latents for N calibration prompts x fixed seeds with the original UNet, then with one
operator modified; take the element-wise mean and standard deviation over the set; the score is

    score = ||mu_orig - mu_mod||_2 + ||sigma_orig - sigma_mod||_2

Low score: the operator barely moves the distribution of generated latents, so it can go. Variants:
``final`` (the paper's: the latents the sampler ends on), ``trajectory`` (the latents after every
step, so an operator that only matters early is not missed) and ``paired`` (beyond the paper: the mean
L2 distance between the final latents of the *same* prompt and seed). The set statistics cannot see an
operator that changes which image a prompt gets while the set keeps its spread - a cross-attention
that binds colours to shapes - and pairing sees exactly that; it is no longer task-agnostic in the
paper's sense, only prompt-conditional.

Scores are cached one file per (model, settings, already-applied plan, operator, modification), so an
interrupted run resumes; with ``accelerate launch`` the candidates are split across the processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..inventory import count_macs, count_macs_with_calls, operator_inventory, unet_example_inputs
from .patches import _parent, apply_modification, modifications_for
from .score_config import ScoreConfig
from .scores import get_score, ld_score, paired_score  # noqa: F401  (re-exported for callers of this module)
from .selection import overlaps  # noqa: F401  (re-exported: patches and tests use it from here)

logger = logging.getLogger("edgeldm")


@dataclass
class Candidate:
    op: str
    type: str
    modification: str
    macs_saved: int = 0
    params_saved: int = 0
    score: float | None = None
    latency_saved_s: float | None = None
    params: dict = field(default_factory=dict)  # narrow: {"keep", "idxs"}

    @property
    def key(self) -> str:
        keep = f"@{self.params['keep']}" if "keep" in self.params else ""
        return f"{self.modification}{keep}:{self.op}"

    def apply(self, unet):
        return apply_modification(unet, self.op, self.type, self.modification, self.params)

    def to_dict(self) -> dict:
        return asdict(self)


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def enumerate_candidates(unet, *, height: int, width: int, vae_scale_factor: int = 8,
                         exclude: list[str] = (), narrow_keep: float | None = 0.5) -> list[Candidate]:
    """Every (operator, modification) pair that applies, with the MACs and parameters it saves (counted).

    The UNet is counted once; a modification's saving is the operator's MACs in that pass minus its
    stand-in's, counted on the arguments the operator was called with (the stand-in keeps the output's
    shape, so nothing else changes). An operator whose call could not be recorded (called twice) is counted
    with the modification applied to the whole UNet. ``narrow_keep`` is the fraction of inner channels a
    ``narrow`` candidate keeps (None: no narrowing).
    """
    from .patches import MODIFICATIONS

    inputs = unet_example_inputs(unet, height, width, vae_scale_factor=vae_scale_factor)
    ops = [op for op in operator_inventory(unet) if not any(overlaps(op.name, e) for e in exclude)]
    base, calls = count_macs_with_calls(unet, inputs, [op.name for op in ops])
    base_params = _params(unet)
    device = next(unet.parameters()).device
    out = []
    for op in ops:
        module = unet.get_submodule(op.name)
        for name in modifications_for(module, op.type, narrow=narrow_keep is not None):
            cand = Candidate(op.name, op.type, name)
            params = MODIFICATIONS[(name, op.type)].params
            if params is not None:  # a parameterised modification records what replays it (narrow: channels)
                cand.params = params(module, op.type, narrow_keep)
            undo = cand.apply(unet)
            try:
                if op.name in calls:
                    parent, attr = _parent(unet, op.name)
                    stand_in = getattr(parent, attr)  # None where the stand-in is no module (the mid-block)
                    args, kwargs = calls[op.name].materialize(device)
                    after = 0 if stand_in is None else count_macs(stand_in, kwargs, args=args).total
                    cand.macs_saved = base.per_module.get(op.name, 0) - after
                else:
                    cand.macs_saved = base.total - count_macs(unet, inputs).total
                cand.params_saved = base_params - _params(unet)
            finally:
                undo()
            out.append(cand)
    return out


class LatentStatistics:
    """Generates the calibration latents of a pipeline and reduces them to element-wise mean / std."""

    def __init__(self, pipe, prompts: list[str], config: ScoreConfig):
        self.pipe, self.prompts, self.config = pipe, prompts, config
        self.seeds = [config.seed * 100_003 + i for i in range(len(prompts))]
        pipe.set_progress_bar_config(disable=True)

    def latents(self) -> np.ndarray:
        c, pipe = self.config, self.pipe
        trajectory = get_score(c.variant).trajectory  # every step's latents, not only the final ones
        chunks = []
        for i in range(0, len(self.prompts), c.batch_size):
            prompts = self.prompts[i:i + c.batch_size]
            gens = [torch.Generator().manual_seed(s) for s in self.seeds[i:i + c.batch_size]]
            steps: list[torch.Tensor] = []

            def keep(_pipe, _i, _t, kwargs):
                steps.append(kwargs["latents"].detach().float().clone())
                return kwargs

            with torch.inference_mode():
                final = pipe(prompts, num_inference_steps=c.steps, guidance_scale=c.guidance, generator=gens,
                             height=c.height, width=c.width, output_type="latent",
                             callback_on_step_end=keep if trajectory else None).images
            lat = torch.stack(steps, dim=1) if trajectory else final.float()
            chunks.append(lat.cpu().numpy())
        return np.concatenate(chunks)

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        lat = self.latents().astype(np.float64)
        return lat.mean(axis=0), lat.std(axis=0)


def _latency_saved(unet, inputs: dict, undo_and_redo, repeat: int) -> float:
    """Median UNet-step seconds of the original minus the modified, timed alternately (A B A B …)."""
    from ..benchmarks.timing import alternate, synchronizer

    undo, redo = undo_and_redo
    sync = synchronizer(next(unet.parameters()).device)

    def step():
        with torch.inference_mode():
            unet(**inputs)
        sync()

    def original():
        undo()
        try:
            step()
        finally:
            redo()

    a, b = alternate(original, step, repeat=repeat, warmup=1)
    return float(np.median(a) - np.median(b))


class ScoreCache:
    """One JSON file per scored candidate under ``folder`` (atomic writes, so a kill loses one score at most)."""

    def __init__(self, folder: Path | None, context: dict):
        self.folder = Path(folder) if folder else None
        self.context = hashlib.sha256(json.dumps(context, sort_keys=True, default=str).encode()).hexdigest()[:16]
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)

    def _file(self, cand: Candidate) -> Path:
        digest = hashlib.sha256(f"{self.context}|{cand.key}".encode()).hexdigest()[:24]
        return self.folder / f"{digest}.json"

    def get(self, cand: Candidate) -> dict | None:
        if self.folder and self._file(cand).is_file():
            try:
                return json.loads(self._file(cand).read_text())
            except ValueError:
                return None  # a torn file from a crash: score it again
        return None

    def put(self, cand: Candidate) -> None:
        if self.folder:
            from ..atomic import atomic_write_text

            atomic_write_text(self._file(cand), json.dumps(
                {"score": cand.score, "latency_saved_s": cand.latency_saved_s}))


def score_candidates(pipe, candidates: list[Candidate], prompts: list[str], config: ScoreConfig, *,
                     cache: ScoreCache | None = None) -> list[Candidate]:
    """Fill in ``score`` (and ``latency_saved_s``) of every candidate; shards across accelerate processes."""
    from accelerate import PartialState

    from ..progress import progress_bar

    variant = get_score(config.variant)
    cache = cache or ScoreCache(None, {})
    unet = pipe.unet
    stats = LatentStatistics(pipe, prompts, config)
    # the paper's variants compare the latents' element-wise set statistics, paired ones the latents themselves
    measure, score = (stats.statistics if variant.statistics else stats.latents), variant.score
    reference = measure()
    config = default_config_for(pipe, config)
    step_inputs = unet_example_inputs(unet, config.height, config.width, vae_scale_factor=pipe.vae_scale_factor,
                                      batch=2, device=unet.device)
    todo = [c for c in candidates if cache.get(c) is None]
    state = PartialState()
    with state.split_between_processes(todo) as mine:
        with progress_bar(total=len(mine), desc="scoring operators", unit="op") as bar:
            for cand in mine:
                undo = [cand.apply(unet)]

                def redo(c=cand):
                    undo[0] = c.apply(unet)

                try:
                    cand.score = score(reference, measure())
                    if config.latency_repeat:
                        cand.latency_saved_s = _latency_saved(unet, step_inputs, (lambda: undo[0](), redo),
                                                              config.latency_repeat)
                finally:
                    undo[0]()
                cache.put(cand)
                bar.update(1)
    state.wait_for_everyone()
    for cand in candidates:
        hit = cache.get(cand)
        if hit is not None:
            cand.score, cand.latency_saved_s = hit["score"], hit["latency_saved_s"]
    missing = [c.key for c in candidates if c.score is None]
    if missing:  # only possible when processes do not share the cache folder
        raise RuntimeError(f"{len(missing)} candidates were scored by other processes without a shared --cache")
    return candidates


def default_config_for(pipe, config: ScoreConfig) -> ScoreConfig:
    """Fill the image size from the model."""
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return replace(config, height=config.height or size, width=config.width or size)
