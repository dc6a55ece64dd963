"""Bias-only models: features, hypothesis-only, colour-only; JSON persistence."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from data_fixtures import tiny_images, tiny_nli
from debiaskd.core.errors import DebiaskdError
from debiaskd.data.schema import COLOR_NAMES, NLI_LABELS
from debiaskd.training import bias


def _pairs(items: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame({"premise": [p for p, _ in items], "hypothesis": [h for _, h in items]})


def test_features_of_known_pairs() -> None:
    feats = bias.nli_bias_features(_pairs([
        ("The doctor saw the lawyer near the lake.", "The doctor saw the lawyer."),
        ("If the actor slept, the judge ran.", "The judge ran."),
        ("The doctor saw the lawyer.", "The lawyer did not see a cat."),
    ]))
    col = {name: i for i, name in enumerate(bias.FEATURE_NAMES)}
    assert feats.shape == (3, len(bias.FEATURE_NAMES))
    assert feats[0, col["overlap_rate"]] == 1.0 and feats[0, col["all_overlap"]] == 1.0
    assert feats[0, col["subsequence"]] == 1.0 and feats[0, col["hyp_negation"]] == 0.0
    assert feats[1, col["constituent"]] == 1.0
    assert feats[2, col["hyp_negation"]] == 1.0 and feats[2, col["all_overlap"]] == 0.0
    assert feats[2, col["overlap_rate"]] < 1.0
    assert feats[0, col["hyp_length"]] == 5.0


def test_features_model_predicts_entailment_for_full_overlap() -> None:
    model = bias.fit_bias_model(tiny_nli(150), "features", seed=0)
    probe = _pairs([("The pilot visited the queen in the old garden.", "The pilot visited the queen."),
                    ("The king liked the poet at the party.", "The poet liked the king.")])  # swap: full overlap
    probs = model.predict_proba(probe)
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert (probs.argmax(1) == NLI_LABELS.index("entailment")).all()


def test_hypothesis_only_model_picks_up_negation() -> None:
    model = bias.fit_bias_model(tiny_nli(150), "hypothesis_only", seed=0)
    probe = _pairs([("A cat sat.", "The pilot did not sleep."), ("A cat sat.", "The pilot slept.")])
    probs = model.predict_proba(probe)
    contradiction = NLI_LABELS.index("contradiction")
    assert probs[0].argmax() == contradiction
    assert probs[0, contradiction] > probs[1, contradiction] + 0.2


def test_bias_model_json_roundtrip(tmp_path) -> None:
    train = tiny_nli(150)
    for kind in ("features", "hypothesis_only"):
        model = bias.fit_bias_model(train, kind, seed=0)
        path = model.save(tmp_path / f"{kind}.json")
        assert json.loads(path.read_text())["kind"] == kind  # plain JSON, no pickle
        again = bias.load_bias_model(path)
        np.testing.assert_allclose(again.predict_proba(train), model.predict_proba(train))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DebiaskdError):
        bias.load_bias_model(tmp_path / "bad.json")


def test_unknown_kind_and_labels_are_refused() -> None:
    with pytest.raises(DebiaskdError):
        bias.fit_bias_model(tiny_nli(150), "parser")
    bad = tiny_nli(150).assign(label="maybe")
    with pytest.raises(DebiaskdError):
        bias.fit_bias_model(bad, "features")


def test_color_model_follows_the_colour() -> None:
    split = tiny_images(n=120)
    model = bias.fit_color_bias_model(split)
    probs = model.predict_proba(split)
    assert probs.shape == (len(split), 4)
    colour_index = split.frame["color"].map({c: i for i, c in enumerate(COLOR_NAMES)}).to_numpy()
    # it predicts the colour's class even on the bias-conflicting images
    assert (probs.argmax(1) == colour_index).mean() > 0.95
    conflicting = ~split.frame["bias_aligned"].to_numpy()
    assert conflicting.any() and (probs.argmax(1)[conflicting] == colour_index[conflicting]).all()


def test_cross_fit_and_add_bias_probs() -> None:
    train = tiny_nli(90)
    probs = bias.cross_fit_bias_probs(train, "features", seed=0, folds=3)
    assert probs.shape == (90, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    frame = bias.add_bias_probs(train, probs)
    assert "bias_probs" not in train.columns
    np.testing.assert_allclose(bias.bias_probs_of(frame), probs)
    with pytest.raises(DebiaskdError):
        bias.add_bias_probs(train, probs[:5])


def test_features_model_on_the_embedded_benchmark() -> None:
    """On the generated data the feature model learns the shortcut: entailment for every HANS heuristic."""
    generate = pytest.importorskip("debiaskd.data.generate_nli")
    from debiaskd.core.config import load_config

    splits = generate.generate_nli(load_config("smoke").nli_data)
    model = bias.fit_bias_model(splits["train"], "features", seed=0)
    challenge = splits["challenge"]
    hans = challenge[challenge["heuristic"].isin(["lexical_overlap", "subsequence", "constituent"])]
    assert (model.predict_proba(hans).argmax(1) == NLI_LABELS.index("entailment")).mean() > 0.9
