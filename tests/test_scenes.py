"""The synthetic scene generator: deterministic, and every caption says what its image shows."""

import numpy as np
import pytest

from edgeldm.calibration.scenes import (
    BACKGROUNDS, COLORS, HELDOUT_COMBOS, POSITION_PHRASES, POSITIONS, SHAPE_WORDS, SIZE_WORDS, SIZES,
    all_scenes, eval_prompts, make_scenes, render, rng_for, Scene,
)


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = make_scenes(64, seed=3), make_scenes(64, seed=3), make_scenes(64, seed=4)
    assert np.array_equal(a.images, b.images) and a.captions == b.captions and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)
    assert a.images.shape == (64, 64, 64, 3) and a.images.dtype == np.uint8


def test_splits_keep_the_compositional_pairs_out_of_training():
    train = {(s.shape, s.color) for s in all_scenes("train")}
    comp = {(s.shape, s.color) for s in all_scenes("compositional")}
    assert comp == set(HELDOUT_COMBOS) and not train & comp
    assert len(all_scenes("train")) + len(all_scenes("compositional")) == 4 * 6 * 5 * 2 * 2
    held = make_scenes(200, seed=0, split="heldout")
    assert not {(s.shape, s.color) for s in held.scenes} & set(HELDOUT_COMBOS)
    # held-out images are new draws, not copies of the training ones
    train_imgs = make_scenes(200, seed=0, split="train").images
    assert not any(np.array_equal(h, t) for h in held.images[:20] for t in train_imgs)


def test_captions_name_the_attributes_of_their_scene():
    batch = make_scenes(300, seed=1)
    for cap, sc in zip(batch.captions, batch.scenes):
        assert sc.color in cap
        assert any(w in cap for w in SHAPE_WORDS[sc.shape])
        assert any(w in cap.split() or f"{w}," in cap for w in SIZE_WORDS[sc.size])
        assert any(p in cap for p in POSITION_PHRASES[sc.position]) or cap.startswith(f"{sc.position}:")
        other_bg = [b for b in BACKGROUNDS if b != sc.background]
        assert not any(b in cap for b in other_bg)
    assert len(set(batch.captions)) > 150  # paraphrases, not one template


def _foreground(img, background):
    return np.abs(img.astype(int) - np.array(BACKGROUNDS[background])).sum(-1) > 60


@pytest.mark.parametrize("scene", [Scene(s, c, p, z, b) for s in ("circle", "cross") for c in ("red", "cyan")
                                   for p in POSITIONS for z in SIZES for b in BACKGROUNDS])
def test_rendered_image_shows_the_scene(scene):
    img = render(scene, rng_for(0, "train"))
    fg = _foreground(img, scene.background)
    ys, xs = np.nonzero(fg)
    cx, cy = POSITIONS[scene.position]
    assert abs(xs.mean() / 64 - cx) < 0.06 and abs(ys.mean() / 64 - cy) < 0.06  # where the caption says
    core_color = np.median(img[fg], axis=0)  # median: anti-aliased edges blend into the background
    assert np.abs(core_color - np.array(COLORS[scene.color])).max() < 30  # the colour it says
    area = fg.sum()
    small, large = (np.pi * SIZES["small"] ** 2, np.pi * SIZES["large"] ** 2)
    assert (area > (small + large) / 2 * 0.6) == (scene.size == "large")


def test_eval_prompts_always_name_the_background_and_are_deterministic():
    a, b = eval_prompts(50, seed=0), eval_prompts(50, seed=0)
    assert a == b
    assert all(sc.background in cap for cap, sc in a)
    assert eval_prompts(50, seed=1) != a


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="unknown split"):
        make_scenes(2, split="validation")
