"""The attribute classifier that measures prompt fidelity on the synthetic scenes.

A small CNN reads a 64x64 scene and predicts each attribute of :mod:`edgeldm.calibration.scenes`
(shape, colour, position, size, background). Its 64-d penultimate features are the space in which the
Fréchet distance between generated and real images is computed (our stand-in for FID, whose Inception
features mean little on flat synthetic scenes).

Trained by ``python -m edgeldm.benchmarks.attribute_classifier --out FILE`` on real scenes with
augmentations that mimic what a VAE decoder does to an image (blur, noise, small colour shifts), and
shipped as ``benchmarks/data/attribute_classifier.safetensors`` (config and held-out accuracy in its
metadata).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from importlib import resources
from pathlib import Path

import numpy as np

from ..calibration.scenes import ATTRIBUTES, VALUES, make_scenes

FEATURE_DIM = 64
SHIPPED = "attribute_classifier.safetensors"


def _build(width: int = 16):
    import torch.nn as nn

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(), nn.MaxPool2d(2))

    class AttributeClassifier(nn.Module):
        """64x64 RGB in [-1, 1] -> (features, {attribute: logits}); flattening the 4x4 map keeps position."""

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(block(3, width), block(width, 2 * width), block(2 * width, 2 * width),
                                      block(2 * width, 2 * width), nn.Flatten(),
                                      nn.Linear(2 * width * 16, FEATURE_DIM), nn.SiLU())
            self.heads = nn.ModuleDict({a: nn.Linear(FEATURE_DIM, len(VALUES[a])) for a in ATTRIBUTES})

        def forward(self, x):
            f = self.body(x)
            return f, {a: head(f) for a, head in self.heads.items()}

    return AttributeClassifier()


def to_input(images: np.ndarray):
    """uint8 NHWC images (any size) -> float NCHW in [-1, 1] at 64x64."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    if x.shape[-1] != 64 or x.shape[-2] != 64:
        x = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    return x


def _augment(x, gen):
    """What decoding through a VAE does to an image, roughly: blur, noise, a small colour cast."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    blur = torch.rand(n, generator=gen) < 0.5
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    x = torch.where(blur[:, None, None, None], blurred, x)
    x = x + (torch.rand(n, 3, 1, 1, generator=gen) - 0.5) * 0.16
    x = x + torch.randn(x.shape, generator=gen) * torch.rand(n, 1, 1, 1, generator=gen) * 0.1
    return x.clamp(-1, 1)


class AttributeScorer:
    """Loads the shipped classifier; scores uint8 images."""

    def __init__(self, path: str | Path | None = None):
        import torch
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path) if path else Path(str(resources.files("edgeldm.benchmarks").joinpath("data", SHIPPED)))
        if not path.is_file():
            from ..errors import EdgeLDMError

            raise EdgeLDMError(f"attribute classifier {path} is missing",
                               hint="train it with: python -m edgeldm.benchmarks.attribute_classifier --out FILE")
        with safe_open(str(path), framework="pt") as f:
            self.metadata = dict(f.metadata() or {})
        self.model = _build(int(self.metadata.get("width", 16)))
        self.model.load_state_dict(load_file(str(path)))
        self.model.eval()
        self._torch = torch

    def __call__(self, images: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(features (n, 64), predicted class index per attribute (n, len(ATTRIBUTES)))."""
        feats, preds = [], []
        with self._torch.no_grad():
            for i in range(0, len(images), batch):
                f, logits = self.model(to_input(images[i:i + batch]))
                feats.append(f.numpy())
                preds.append(np.stack([logits[a].argmax(1).numpy() for a in ATTRIBUTES], axis=1))
        return np.concatenate(feats), np.concatenate(preds)


def heldout_accuracy(scorer: AttributeScorer, n: int = 2000, seed: int = 0) -> dict[str, float]:
    batch = make_scenes(n, seed=seed + 1000, split="heldout")
    _, preds = scorer(batch.images)
    acc = {a: float((preds[:, k] == batch.labels[:, k]).mean()) for k, a in enumerate(ATTRIBUTES)}
    acc["joint"] = float((preds == batch.labels).all(axis=1).mean())
    return acc


def train(out: Path, *, steps: int = 1500, batch: int = 64, seed: int = 0, width: int = 16, n_images: int = 20_000) -> dict:
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    # real scenes from every combination (compositional pairs included: the classifier must know them all)
    train_sets = [make_scenes(n_images * 9 // 10, seed=seed, split="train"),
                  make_scenes(n_images // 10, seed=seed, split="compositional")]
    images = np.concatenate([b.images for b in train_sets])
    labels = torch.from_numpy(np.concatenate([b.labels for b in train_sets]))
    model = _build(width)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    order = np.random.Generator(np.random.PCG64(seed)).integers(len(images), size=(steps, batch))
    t0 = time.time()
    model.train()
    for step in range(steps):
        idx = order[step]
        x = _augment(to_input(images[idx]), gen)
        _, logits = model(x)
        loss = sum(torch.nn.functional.cross_entropy(logits[a], labels[idx, k]) for k, a in enumerate(ATTRIBUTES))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step()
        if (step + 1) % 100 == 0:
            print(f"[{time.time() - t0:5.0f}s] classifier step {step + 1}/{steps} loss {loss.item():.4f}", flush=True)
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    meta = {"width": str(width), "feature_dim": str(FEATURE_DIM), "attributes": json.dumps(ATTRIBUTES),
            "values": json.dumps(VALUES), "steps": str(steps), "seed": str(seed)}
    save_file(model.state_dict(), str(tmp), metadata=meta)
    acc = heldout_accuracy(AttributeScorer(tmp), seed=seed)
    meta["heldout_accuracy"] = json.dumps(acc)
    save_file(model.state_dict(), str(tmp), metadata=meta)
    tmp.replace(out)
    return acc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgeldm.benchmarks.attribute_classifier",
                                description="Train the scene attribute classifier used by `edgeldm eval`.")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    acc = train(Path(args.out), steps=args.steps, seed=args.seed)
    print("held-out accuracy (2000 real scenes):", json.dumps(acc))
    return 0


if __name__ == "__main__":
    from ..entry import run_guarded

    raise SystemExit(run_guarded(main, tracebacks=True))
