"""Quality of image-to-image and inpainting on ``tiny``, read by the attribute classifier (issue #27, item 5).

    python -m edgeldm.benchmarks.studies.img2img_bench --scenes 200 --out /tmp/img2img-bench [--json F]

The inputs are rendered held-out scenes (known attributes), run through the torch-free runtime on a ``tiny``
bundle exported with its VAE encoder (cached under --out):

1. **recolour**: image-to-image at strength 0.6 with the scene's caption in another colour; a case passes when
   the classifier reads the new colour and the input's shape and position. At strength 0.2 with the scene's own
   caption: the PSNR of the output against the input;
2. **inpaint**: the region that holds the shape masked (a square around its position), the prompt naming
   another shape and colour at that position (same size, same background); the classifier's joint accuracy on
   that prompt, and the PSNR of the unmasked region against the input.

Goals (the issue): recolour >= 90 %, strength-0.2 PSNR >= 25 dB, inpainting joint accuracy >= 85 %, unmasked
PSNR >= 30 dB. Accuracies and PSNRs are deterministic (no timing here).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..quality import prompt_accuracy, psnr

#: a latent pixel is 8 image pixels: the mask's half side covers a large shape and its jitter
MASK_HALF = 20


def _bundle(out: Path) -> Path:
    from ...exporters.bundle import ExportConfig, export_bundle

    bundle = out / "tiny-encoder"
    if not (bundle / "edgeldm.json").is_file():
        export_bundle("tiny", bundle, ExportConfig(backends=("onnx",), vae_encoder=True), overwrite=True)
    return bundle


def _other(values, current, rng):
    return [v for v in values if v != current][rng.integers(len(values) - 1)]


def _mask(scene, size: int) -> np.ndarray:
    from ...calibration.scenes import POSITIONS

    cx, cy = (int(round(v * size)) for v in POSITIONS[scene.position])
    mask = np.zeros((size, size), np.uint8)
    mask[max(cy - MASK_HALF, 0):cy + MASK_HALF, max(cx - MASK_HALF, 0):cx + MASK_HALF] = 255
    return mask


def run(scenes: int, out: Path, steps: int, seed: int = 0) -> dict:
    from PIL import Image

    from ...calibration.scenes import COLORS, SHAPES, caption, make_scenes, rng_for
    from ...progress import progress_bar
    from ...runtimes.text2image import Text2Image
    from ..attribute_classifier import AttributeScorer

    t2i = Text2Image(_bundle(out))
    batch = make_scenes(scenes, seed=seed + 3000, split="heldout")
    rng = rng_for(seed + 3001, "heldout")
    recoloured, kept, inpainted, unmasked = [], [], [], []
    recolour_scenes, inpaint_scenes = [], []
    with progress_bar(total=scenes, desc="img2img", unit="scene") as bar:
        for i, (pixels, scene) in enumerate(zip(batch.images, batch.scenes)):
            image = Image.fromarray(pixels)
            new = replace(scene, color=_other(tuple(COLORS), scene.color, rng))
            recolour_scenes.append(new)
            recoloured.append(np.asarray(t2i(caption(new, rng), steps=steps, seed=i, image=image, strength=0.6)))
            low = np.asarray(t2i(caption(scene, rng), steps=steps, seed=i, image=image, strength=0.2))
            kept.append(float(psnr(low[None], pixels[None])[0]))
            target = replace(scene, shape=_other(SHAPES, scene.shape, rng),
                             color=_other(tuple(COLORS), scene.color, rng))
            inpaint_scenes.append(target)
            mask = _mask(scene, pixels.shape[0])
            result = np.asarray(t2i(caption(target, rng), steps=steps, seed=i, image=image,
                                    mask=Image.fromarray(mask)))
            inpainted.append(result)
            keep = mask == 0
            mse = np.mean((result[keep].astype(np.float64) - pixels[keep].astype(np.float64)) ** 2)
            unmasked.append(float(10 * np.log10(255.0**2 / max(mse, 1e-10))))
            bar.update(1)
    scorer = AttributeScorer()
    _, predicted = scorer(np.stack(recoloured))
    acc = prompt_accuracy(predicted, recolour_scenes)
    from ...calibration.scenes import ATTRIBUTES

    cols = [ATTRIBUTES.index(a) for a in ("shape", "color", "position")]
    truth = np.array([s.labels() for s in recolour_scenes])
    recolour_ok = float((predicted[:, cols] == truth[:, cols]).all(axis=1).mean())
    _, predicted_inpaint = scorer(np.stack(inpainted))
    return {
        "scenes": scenes, "steps": steps,
        "recolour": {"strength": 0.6, "pass_rate": recolour_ok, "accuracy": acc, "goal": 0.90},
        "keep": {"strength": 0.2, "psnr_db_mean": float(np.mean(kept)), "psnr_db_min": float(np.min(kept)),
                 "goal_db": 25.0},
        "inpaint": {"accuracy": prompt_accuracy(predicted_inpaint, inpaint_scenes),
                    "unmasked_psnr_db_mean": float(np.mean(unmasked)),
                    "unmasked_psnr_db_min": float(np.min(unmasked)), "goal_joint": 0.85, "goal_db": 30.0},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=200, help="held-out scenes (default 200)")
    p.add_argument("--steps", type=int, default=25, help="sampler steps before the strength cut (default 25)")
    p.add_argument("--out", default="img2img-bench", help="where the bundle is cached")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    r = run(args.scenes, out, args.steps)
    print(f"\ntiny, {r['scenes']} held-out scenes, {r['steps']} steps")
    print(f"recolour at 0.6: colour follows the prompt, shape and position the input: "
          f"{r['recolour']['pass_rate']:.1%} (goal 90 %); joint on the new prompt {r['recolour']['accuracy']['joint']:.1%}")
    print(f"strength 0.2: PSNR vs the input {r['keep']['psnr_db_mean']:.1f} dB mean, {r['keep']['psnr_db_min']:.1f} "
          "min (goal 25)")
    ia = r["inpaint"]["accuracy"]
    print(f"inpaint: joint {ia['joint']:.1%} (goal 85 %; shape {ia['shape']:.1%}, colour {ia['color']:.1%}, "
          f"position {ia['position']:.1%}, size {ia['size']:.1%}); unmasked PSNR "
          f"{r['inpaint']['unmasked_psnr_db_mean']:.1f} dB mean, {r['inpaint']['unmasked_psnr_db_min']:.1f} min "
          "(goal 30)")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from ...entry import run_guarded

    raise SystemExit(run_guarded(main, tracebacks=True))
