"""Metrics on known cases."""

import numpy as np
import pytest

from edgeldm.benchmarks.quality import frechet_distance, latent_mse, prompt_accuracy, psnr
from edgeldm.calibration.scenes import make_scenes


def test_frechet_distance_of_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 16))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_matches_the_gaussian_closed_form():
    rng = np.random.default_rng(1)
    d = 8
    a = rng.normal(size=(200_000, d))
    b = 2.0 * rng.normal(size=(200_000, d)) + 1.0  # N(1, 4 I)
    # |mu|^2 + tr(I + 4I - 2*2I) = d + d
    assert frechet_distance(a, b) == pytest.approx(2 * d, rel=0.02)


def test_frechet_distance_rejects_mismatched_features():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((10, 3)), np.zeros((10, 4)))


def test_prompt_accuracy_is_one_for_true_labels_and_chance_for_shuffled():
    batch = make_scenes(2000, seed=0, split="heldout")
    perfect = prompt_accuracy(batch.labels, batch.scenes)
    assert perfect == {"shape": 1.0, "color": 1.0, "position": 1.0, "size": 1.0, "joint": 1.0}
    shuffled = batch.labels[np.random.default_rng(0).permutation(len(batch.labels))]
    acc = prompt_accuracy(shuffled, batch.scenes)
    assert acc["shape"] == pytest.approx(1 / 4, abs=0.05)
    assert acc["color"] == pytest.approx(1 / 6, abs=0.05)
    assert acc["position"] == pytest.approx(1 / 5, abs=0.05)
    assert acc["size"] == pytest.approx(1 / 2, abs=0.05)
    assert acc["joint"] < 0.03


def test_psnr_and_latent_mse_on_known_differences():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[1] += 10  # MSE 100 -> 10*log10(255^2/100) = 28.13 dB
    values = psnr(a, b)
    assert np.isinf(values[0]) and values[1] == pytest.approx(28.1308, abs=1e-3)
    assert latent_mse(np.zeros((1, 4)), np.full((1, 4), 0.5))[0] == pytest.approx(0.25)
