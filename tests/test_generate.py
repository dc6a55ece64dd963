"""The embedded benchmarks: deterministic, leak-free, HANS-shaped, biased as configured."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_fixtures import smoke, tree_digest
from debiaskd.core.config import NLIDataConfig, VisionDataConfig
from debiaskd.data.build import generate_dataset
from debiaskd.data.generate_nli import MAX_WORDS, full_overlap, generate_nli, has_negation
from debiaskd.data.generate_vision import generate_vision
from debiaskd.data.loaders import load_spec
from debiaskd.data.schema import COLOR_NAMES, HANS_HEURISTICS, NLI_COLUMNS, VISION_COLUMNS
from debiaskd.data.store import read_dataset

SMALL = NLIDataConfig(n_train=300, n_validation=60, n_test=90, n_challenge_per_subcase=6, seed=3)


@pytest.mark.parametrize("task", ["nli", "vision"])
def test_generate_twice_gives_identical_bytes(tmp_path, task):
    a = generate_dataset(task, "smoke", tmp_path / "a")
    b = generate_dataset(task, "smoke", tmp_path / "b")
    assert tree_digest(a) == tree_digest(b)
    c = generate_dataset(task, "smoke", tmp_path / "c", overrides=[f"{task}_data.seed=1"])
    assert tree_digest(a)["train.jsonl"] != tree_digest(c)["train.jsonl"]
    ds = read_dataset(a)
    expected = {"train", "validation", "test", "challenge"} | ({"challenge_dev"} if task == "nli" else set())
    assert set(ds.splits) == expected
    assert ds.manifest["content_hash"] == ds.content_hash


def test_nli_splits_have_schema_sizes_and_no_shared_pairs():
    splits = generate_nli(SMALL)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [300, 60, 90]
    pairs = {}
    for name, df in splits.items():
        marks = ["construction", "construction_seen"] if name.startswith("challenge") else ["construction"]
        assert list(df.columns) == [*NLI_COLUMNS, *marks]
        assert df["construction"].astype(str).str.len().gt(0).all()
        assert df["pair_id"].is_unique
        pairs[name] = set(zip(df.premise, df.hypothesis, strict=True))
        assert len(pairs[name]) == len(df)
        longest = max(len(s.split()) for s in (*df.premise, *df.hypothesis))
        assert longest <= MAX_WORDS
    names = list(pairs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not pairs[a] & pairs[b], (a, b)


@pytest.mark.parametrize("strength", [0.6, 0.9])
def test_bias_strength_is_the_share_of_aligned_training_pairs(strength):
    df = generate_nli(SMALL.model_copy(update={"bias_strength": strength}))["train"]
    cued = (df.heuristic != "none").to_numpy()
    assert df["bias_aligned"][cued].mean() == pytest.approx(strength, abs=0.01)
    assert df["label"].value_counts().max() - df["label"].value_counts().min() <= 1
    overlap = np.array([full_overlap(p, h) for p, h in zip(df.premise, df.hypothesis, strict=True)])
    negated = np.array([has_negation(h) for h in df.hypothesis])
    assert ((overlap & ~negated) == (df.heuristic == "lexical_overlap")).all()
    assert (negated == (df.heuristic == "negation")).all()
    # the planted cues: overlap ↔ entailment, negation ↔ contradiction, each with strength s
    p_ent_given_overlap = (df.label[overlap & ~negated] == "entailment").mean()
    p_con_given_neg = (df.label[negated] == "contradiction").mean()
    assert p_ent_given_overlap == pytest.approx(strength, abs=0.05)
    assert p_con_given_neg == pytest.approx(strength, abs=0.05)
    # ... but they are not sufficient: every label occurs with every cue and without any
    table = df.groupby(["heuristic", "label"]).size().unstack(fill_value=0)
    assert (table > 0).all().all(), table
    assert table.loc["none"].min() > 0.2 * table.loc["none"].sum()


def test_challenge_split_is_hans_shaped():
    splits = generate_nli(SMALL)
    ch = pd.concat([splits["challenge"], splits["challenge_dev"]], ignore_index=True)
    assert set(ch.label) == {"entailment", "non-entailment"}
    for heuristic in (*HANS_HEURISTICS, "negation"):
        part = ch[ch.heuristic == heuristic]
        per_label = part.groupby("label")["subcase"].nunique()
        assert per_label["entailment"] >= 3 and per_label["non-entailment"] >= 3
        assert (part.groupby("subcase").size() == SMALL.n_challenge_per_subcase).all()
        # both challenge splits: every (heuristic, gold label) has a held-out subcase
        for name in ("challenge", "challenge_dev"):
            held = splits[name][(splits[name].heuristic == heuristic) & ~splits[name].construction_seen]
            assert set(held.label) == {"entailment", "non-entailment"}, (name, heuristic)
    hans = ch[ch.heuristic.isin(HANS_HEURISTICS)]
    # the heuristic fires on every pair (all hypothesis words in the premise) and is wrong on ~half
    assert all(full_overlap(p, h) for p, h in zip(hans.premise, hans.hypothesis, strict=True))
    assert (hans.bias_aligned == (hans.label == "entailment")).all()
    neg = ch[ch.heuristic == "negation"]
    assert all(has_negation(h) for h in neg.hypothesis)
    assert (neg.bias_aligned == (neg.label == "non-entailment")).all()
    prefixes = {s[:3] for s in ch.subcase}
    assert {"ln_", "le_", "sn_", "se_", "cn_", "ce_", "ne_", "nn_"} <= prefixes


def test_challenge_tsv_reads_back_through_the_hans_loader(tmp_path):
    path = generate_dataset("nli", "smoke", tmp_path / "d")
    original = read_dataset(path).splits["challenge"]
    back = load_spec(f"hans:{path / 'challenge_hans.tsv'}", "nli", smoke())
    cols = ["pair_id", "premise", "hypothesis", "label", "heuristic", "subcase", "bias_aligned", "group"]
    assert back[cols].astype(str).equals(original[cols].astype(str))


def test_vision_colours_follow_the_label_in_train_only():
    cfg = VisionDataConfig(color_strength=0.9, image_size=12, seed=0)
    splits = generate_vision(cfg)
    for _name, split in splits.items():
        assert split.images.dtype == np.uint8 and split.images.shape[1:] == (3, 12, 12)
        assert list(split.frame.columns) == list(VISION_COLUMNS)
        assert len(split.images) == len(split.frame)
    train_aligned = splits["train"].frame.bias_aligned.mean()
    test_aligned = splits["test"].frame.bias_aligned.mean()
    assert train_aligned > 0.85 and test_aligned < 0.25
    ch = splits["challenge"].frame
    assert len(ch) and not ch.bias_aligned.any()
    assert all(c != COLOR_NAMES[lab] for c, lab in zip(ch.color, ch.label, strict=True))
    # colour is where the digit is: a red digit has no green or blue
    red = splits["train"].frame.index[splits["train"].frame.color == "red"][0]
    img = splits["train"].images[red]
    assert img[0].max() > 100 and img[1].max() == 0 and img[2].max() == 0


def test_vision_max_train_caps_the_training_split():
    splits = generate_vision(VisionDataConfig(max_train=50, image_size=8))
    assert len(splits["train"]) == 50
