"""The synthetic captioned scene dataset that ``tiny`` is trained and measured on.

A scene is one shape on a plain background, fully described by five attributes; its caption is one of
several templates with paraphrases. Because every image is generated from known attributes, prompt
fidelity can be measured exactly (an attribute classifier checks what a generated image shows).

Everything is deterministic from a seed (numpy PCG64). Splits:

* ``train`` — every attribute combination except :data:`HELDOUT_COMBOS`;
* ``heldout`` — the same combinations as ``train`` drawn from another seed stream (new images and
  new caption draws; what ``edgeldm eval`` reports);
* ``compositional`` — only the (shape, colour) pairs never seen in training (generalisation, reported
  separately).

Colours are far apart in hue (no purple beside blue) and shapes span several latent pixels (a latent
pixel covers 8x8 image pixels), so a good model can get every attribute right.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

IMAGE_SIZE = 64
SHAPES = ("circle", "square", "triangle", "cross")
COLORS = {
    "red": (225, 30, 30),
    "green": (30, 175, 45),
    "blue": (35, 75, 225),
    "yellow": (240, 210, 25),
    "cyan": (25, 200, 215),
    "magenta": (215, 40, 200),
}
#: position -> centre of the shape as a fraction of the image side (x, y)
POSITIONS = {
    "center": (0.5, 0.5),
    "top left": (0.27, 0.27),
    "top right": (0.73, 0.27),
    "bottom left": (0.27, 0.73),
    "bottom right": (0.73, 0.73),
}
#: size -> half-extent of the shape in pixels at 64 px
SIZES = {"small": 8.0, "large": 13.5}
BACKGROUNDS = {"white": (245, 245, 245), "black": (18, 18, 18)}
ATTRIBUTES = ("shape", "color", "position", "size", "background")
VALUES = {
    "shape": SHAPES,
    "color": tuple(COLORS),
    "position": tuple(POSITIONS),
    "size": tuple(SIZES),
    "background": tuple(BACKGROUNDS),
}
#: (shape, colour) pairs kept out of training entirely
HELDOUT_COMBOS = frozenset({("triangle", "blue"), ("circle", "yellow"), ("square", "magenta"), ("cross", "green")})
SPLIT_STREAMS = {"train": 0, "heldout": 1, "compositional": 2}
#: the splits a model is evaluated on (never the training stream)
EVAL_SPLITS = tuple(s for s in SPLIT_STREAMS if s != "train")

SHAPE_WORDS = {
    "circle": ("circle", "disc", "round dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "triangle", "wedge"),
    "cross": ("cross", "plus sign", "plus"),
}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
POSITION_PHRASES = {
    "center": ("in the center", "in the middle", "at the center"),
    "top left": ("in the top left", "in the upper left corner", "at the top left"),
    "top right": ("in the top right", "in the upper right corner", "at the top right"),
    "bottom left": ("in the bottom left", "in the lower left corner", "at the bottom left"),
    "bottom right": ("in the bottom right", "in the lower right corner", "at the bottom right"),
}
POSITION_LABELS = {"center": "center", "top left": "top left", "top right": "top right",
                   "bottom left": "bottom left", "bottom right": "bottom right"}
TEMPLATES = (
    "a {size} {color} {shape} {where} on a {background} background",
    "{label}: a {size} {color} {shape}, {background} background",
    "a {color} {shape}, {size}, {where}, on {background}",
    "{where} there is a {size} {color} {shape} on a {background} background",
    "a {size} {color} {shape} {where}",
)


@dataclass(frozen=True)
class Scene:
    shape: str
    color: str
    position: str
    size: str
    background: str

    def labels(self) -> tuple[int, ...]:
        """Class index per attribute, in :data:`ATTRIBUTES` order."""
        return tuple(VALUES[a].index(getattr(self, a)) for a in ATTRIBUTES)

    def to_dict(self) -> dict:
        return asdict(self)


def all_scenes(split: str = "train") -> list[Scene]:
    """Every attribute combination allowed in ``split``, in a fixed order."""
    scenes = [Scene(s, c, p, z, b) for s in SHAPES for c in COLORS for p in POSITIONS for z in SIZES
              for b in BACKGROUNDS]
    if split == "compositional":
        return [sc for sc in scenes if (sc.shape, sc.color) in HELDOUT_COMBOS]
    if split in ("train", "heldout"):
        return [sc for sc in scenes if (sc.shape, sc.color) not in HELDOUT_COMBOS]
    raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_STREAMS)}")


def rng_for(seed: int, split: str) -> np.random.Generator:
    if split not in SPLIT_STREAMS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_STREAMS)}")
    return np.random.Generator(np.random.PCG64([seed, SPLIT_STREAMS[split]]))


def caption(scene: Scene, rng: np.random.Generator) -> str:
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
    return template.format(
        size=pick(SIZE_WORDS[scene.size]), color=scene.color, shape=pick(SHAPE_WORDS[scene.shape]),
        where=pick(POSITION_PHRASES[scene.position]), label=POSITION_LABELS[scene.position],
        background=scene.background,
    )


def render(scene: Scene, rng: np.random.Generator, size: int = IMAGE_SIZE, supersample: int = 4) -> np.ndarray:
    """The scene as a ``(size, size, 3)`` uint8 image (anti-aliased by supersampling)."""
    from PIL import Image, ImageDraw

    big = size * supersample
    img = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    scale = size / IMAGE_SIZE
    cx, cy = POSITIONS[scene.position]
    # jitter keeps images varied without ever crossing into another position's area
    cx = (cx * size + rng.uniform(-2.5, 2.5) * scale) * supersample
    cy = (cy * size + rng.uniform(-2.5, 2.5) * scale) * supersample
    r = SIZES[scene.size] * scale * rng.uniform(0.92, 1.08) * supersample
    color = tuple(int(np.clip(v + rng.integers(-12, 13), 0, 255)) for v in COLORS[scene.color])
    if scene.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
    elif scene.shape == "square":
        s = r * 0.88
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=color)
    elif scene.shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r * 1.05, cy + r * 0.85), (cx + r * 1.05, cy + r * 0.85)], fill=color)
    elif scene.shape == "cross":
        w = r * 0.36
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=color)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=color)
    else:
        raise ValueError(f"unknown shape {scene.shape!r}")
    return np.asarray(img.resize((size, size), Image.BOX), dtype=np.uint8)


@dataclass
class SceneBatch:
    images: np.ndarray  # (n, H, W, 3) uint8
    captions: list[str]
    labels: np.ndarray  # (n, len(ATTRIBUTES)) int64
    scenes: list[Scene]


def sample_scenes(n: int, seed: int = 0, split: str = "train") -> list[Scene]:
    rng = rng_for(seed, split)
    pool = all_scenes(split)
    return [pool[i] for i in rng.integers(len(pool), size=n)]


def make_scenes(n: int, seed: int = 0, split: str = "train", *, size: int = IMAGE_SIZE) -> SceneBatch:
    """``n`` scenes of ``split``: images, captions and labels, identical for identical arguments."""
    rng = rng_for(seed, split)
    pool = all_scenes(split)
    picks = rng.integers(len(pool), size=n)
    scenes = [pool[i] for i in picks]
    images = np.stack([render(sc, rng, size) for sc in scenes]) if n else np.zeros((0, size, size, 3), np.uint8)
    captions = [caption(sc, rng) for sc in scenes]
    labels = np.array([sc.labels() for sc in scenes], dtype=np.int64).reshape(n, len(ATTRIBUTES))
    return SceneBatch(images, captions, labels, scenes)


def eval_prompts(n: int, seed: int = 0, split: str = "heldout") -> list[tuple[str, Scene]]:
    """(caption, scene) pairs for evaluating a text-to-image model; captions always name every attribute
    scored (shape, colour, position, size) — and the background, so it is not left to chance."""
    rng = rng_for(seed + 7919, split)  # a stream of its own: eval prompts never reuse training draws
    pool = all_scenes(split)
    scenes = [pool[i] for i in rng.integers(len(pool), size=n)]
    out = []
    for sc in scenes:
        text = caption(sc, rng)
        while sc.background not in text:  # templates without the background are redrawn
            text = caption(sc, rng)
        out.append((text, sc))
    return out
