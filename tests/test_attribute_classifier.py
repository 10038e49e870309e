"""The shipped attribute classifier: >= 99 % on held-out real scenes, chance on shuffled labels."""

import numpy as np
import pytest

from edgeldm.benchmarks.attribute_classifier import AttributeScorer
from edgeldm.benchmarks.quality import prompt_accuracy
from edgeldm.calibration.scenes import ATTRIBUTES, make_scenes


@pytest.fixture(scope="module")
def scorer():
    return AttributeScorer()


@pytest.fixture(scope="module")
def heldout():
    return make_scenes(300, seed=77, split="heldout")


def test_classifier_is_at_least_99_percent_right_on_heldout_real_scenes(scorer, heldout):
    feats, preds = scorer(heldout.images)
    assert feats.shape == (300, 64)
    for k, attr in enumerate(ATTRIBUTES):
        assert (preds[:, k] == heldout.labels[:, k]).mean() >= 0.99, attr


def test_classifier_knows_the_compositional_pairs_too(scorer):
    comp = make_scenes(200, seed=5, split="compositional")
    _, preds = scorer(comp.images)
    assert prompt_accuracy(preds, comp.scenes)["joint"] >= 0.97


def test_shuffled_prompts_score_near_chance(scorer, heldout):
    _, preds = scorer(heldout.images)
    shuffled = [heldout.scenes[i] for i in np.random.default_rng(0).permutation(len(heldout.scenes))]
    acc = prompt_accuracy(preds, shuffled)
    assert acc["color"] < 0.3 and acc["shape"] < 0.4 and acc["joint"] < 0.05


def test_shipped_metadata_reports_its_accuracy(scorer):
    import json

    acc = json.loads(scorer.metadata["heldout_accuracy"])
    assert acc["joint"] >= 0.99
