"""Bias-aware augmentation: valid, label-correct, deduplicated counter-examples; bad ones filtered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_fixtures import shared_file, smoke
from debiaskd.core.config import AugmentConfig
from debiaskd.data.augment import augment_nli, augment_nli_with_stats, augment_vision, quality
from debiaskd.data.generate_nli import full_overlap, has_negation
from debiaskd.data.loaders import load_spec
from debiaskd.data.schema import COLOR_NAMES, NLI_COLUMNS
from debiaskd.data.validate import validate_split


@pytest.fixture(scope="module")
def train():
    return load_spec("generated:train", "nli", smoke())


def test_nli_augmentation_is_valid_label_correct_and_new(train):
    cfg = AugmentConfig(ratio=0.5)
    aug = augment_nli(train, cfg, seed=0)
    assert len(aug) == round(0.5 * len(train)) and list(aug.columns) == [*NLI_COLUMNS, "construction"]
    assert aug.construction.equals(aug.template)
    assert aug.pair_id.str.startswith("aug-").all() and aug.pair_id.is_unique
    assert set(aug.template) == {"role_swap", "embedded_claim", "negated_conjunct", "factive_negated"}
    pairs = set(zip(aug.premise, aug.hypothesis, strict=True))
    assert len(pairs) == len(aug)
    assert not pairs & set(zip(train.premise, train.hypothesis, strict=True))
    for r in aug.itertuples():
        assert r.premise != r.hypothesis
        if r.template in ("role_swap", "embedded_claim"):  # full overlap, yet not entailed
            assert r.label == "neutral" and full_overlap(r.premise, r.hypothesis) and not r.bias_aligned
        else:  # negation cue, yet entailed: the hypothesis is literally a conjunct / factive complement
            assert r.label == "entailment" and has_negation(r.hypothesis) and not r.bias_aligned
            assert r.hypothesis.rstrip(".").lower() in r.premise.lower()
    assert validate_split(aug, "nli", "augment", "augment.jsonl", smoke().validation).ok
    again = augment_nli(train, cfg, seed=0)
    assert again.equals(aug)


def test_quality_filter_rejects_bad_candidates():
    assert quality("The doctor slept.", "The doctor slept.")[0] == 0.0
    assert quality("The the doctor slept.", "The doctor slept.")[1] == "doubled word"
    assert quality(" ".join(["word"] * 50) + ".", "A b.")[1] == "too long"
    assert quality("The man said that it may rain.", "It may rain.", embedded="It may rain.")[0] == 0.0
    assert quality("X knew that Y slept.", "Y slept.", needs_negation=True, embedded="Y slept.")[0] == 0.0
    assert quality("The doctor said that (2) cats sat.", "(2) cats sat.")[0] < 1.0
    assert quality("The doctor said that the cat sat.", "The cat sat.") == (1.0, "")


def test_filter_counts_rejections_and_respects_min_quality():
    rows = pd.DataFrame({
        "premise": ["I may not go home.", "He did not eat (2) apples.", "The cat did not sleep.", "Dogs ran."],
        "hypothesis": ["Is it so?", "They ate.", "The cat slept.", "Animals ran."],
        "label": ["neutral", "contradiction", "contradiction", "entailment"],
    })
    for c in NLI_COLUMNS:
        if c not in rows:
            rows[c] = "x"
    strict, stats = augment_nli_with_stats(rows, AugmentConfig(ratio=1.0, min_quality=0.95), seed=1)
    lax = augment_nli(rows, AugmentConfig(ratio=1.0, min_quality=0.1), seed=1)
    assert stats["rejected"] > 0 and sum(stats["reasons"].values()) == stats["rejected"]
    assert not strict.premise.str.contains(r"\(2\)").any()
    assert not strict.hypothesis.str.contains("may").any()  # modal: label not guaranteed
    assert len(lax) >= len(strict)


def test_vision_augmentation_flips_colours(tmp_path):
    split = load_spec("generated:train", "vision", smoke("vision"))
    aug = augment_vision(split, AugmentConfig(ratio=0.2), seed=0)
    assert 0 < len(aug) <= round(0.2 * len(split))
    assert aug.images.dtype == np.uint8 and aug.images.shape[1:] == split.images.shape[1:]
    assert not aug.frame.bias_aligned.any()
    assert all(c != COLOR_NAMES[lab] for c, lab in zip(aug.frame.color, aug.frame.label, strict=True))
    assert aug.frame.image_id.str.startswith("aug-").all()
    assert validate_split(aug, "vision", "augment", "augment.jsonl", smoke("vision").validation).ok


@pytest.mark.shared_data
def test_augmentation_works_on_real_mnli_rows():
    mnli = load_spec(str(shared_file("nli", "mnli_dev_matched_bert_difficulty.tsv")), "nli", smoke()).head(1500)
    aug, stats = augment_nli_with_stats(mnli, AugmentConfig(ratio=0.1), seed=0)
    assert len(aug) == 150 and "role_swap" not in set(aug.template)  # needs the generator's grammar
    assert stats["rejected"] > 0
    assert all(r.hypothesis.rstrip(".").lower() in r.premise.lower() for r in aug.itertuples())
