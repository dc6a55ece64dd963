"""The planted shortcuts are real: simple ERM baselines learn them and fail where they mislead."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from debiaskd.core.config import load_config
from debiaskd.data.generate_nli import generate_nli, words
from debiaskd.data.schema import HANS_HEURISTICS, to_two_way
from debiaskd.training.bias import fit_bias_model


@pytest.fixture(scope="module")
def splits():
    return generate_nli(load_config("default").nli_data)  # default preset sizes


def _pair_tokens(premise: str, hypothesis: str) -> str:
    """Bag of words of both sentences plus, per hypothesis word, whether the premise has it."""
    pw = set(words(premise))
    toks = [f"p_{w}" for w in words(premise)]
    for w in words(hypothesis):
        toks += [f"h_{w}", f"{'in' if w in pw else 'new'}_{w}"]
    return " ".join(toks)


def _fit(texts, labels):
    vec = CountVectorizer(token_pattern=r"\S+", binary=True)
    clf = LogisticRegression(max_iter=2000, C=1.0)
    clf.fit(vec.fit_transform(texts), labels)
    return lambda xs: clf.predict(vec.transform(xs))


def test_bag_of_words_erm_follows_the_overlap_heuristic(splits):
    train, test, ch = splits["train"], splits["test"], splits["challenge"]
    predict = _fit([_pair_tokens(p, h) for p, h in zip(train.premise, train.hypothesis, strict=True)], train.label)
    id_acc = (predict([_pair_tokens(p, h) for p, h in zip(test.premise, test.hypothesis, strict=True)])
              == test.label).mean()
    hans = ch[ch.heuristic.isin(HANS_HEURISTICS)]
    pred = np.array([to_two_way(x) for x in predict(
        [_pair_tokens(p, h) for p, h in zip(hans.premise, hans.hypothesis, strict=True)])])
    gold = hans.label.to_numpy()
    entailed = (pred[gold == "entailment"] == "entailment").mean()
    non_entailed = (pred[gold == "non-entailment"] == "non-entailment").mean()
    assert id_acc > 0.8  # it learned the task in distribution ...
    assert entailed > 0.8  # ... follows the heuristic where it is right ...
    assert non_entailed < id_acc - 0.4  # ... and fails where it is wrong
    for heuristic, ceiling in (("lexical_overlap", 0.4), ("subsequence", 0.4), ("constituent", 0.6)):
        part = gold[hans.heuristic.to_numpy() == heuristic]
        part_pred = pred[hans.heuristic.to_numpy() == heuristic]
        assert (part_pred[part == "non-entailment"] == "non-entailment").mean() < ceiling, heuristic


def test_hypothesis_only_baseline_exploits_the_negation_cue(splits):
    train, test, ch = splits["train"], splits["test"], splits["challenge"]
    predict = _fit(list(train.hypothesis), train.label)
    pred = predict(list(test.hypothesis))
    cue_right = (test.group == "negation/contradiction").to_numpy()
    cue_wrong = (test.group == "negation/entailment").to_numpy()
    assert cue_right.sum() >= 100 and cue_wrong.sum() >= 5
    assert (pred[cue_right] == "contradiction").mean() > 0.9
    assert (pred[cue_wrong] == "entailment").mean() < 0.3
    neg = ch[ch.heuristic == "negation"]
    two_way = np.array([to_two_way(x) for x in predict(list(neg.hypothesis))])
    gold = neg.label.to_numpy()
    assert (two_way[gold == "non-entailment"] == "non-entailment").mean() > 0.8
    assert (two_way[gold == "entailment"] == "entailment").mean() < 0.3


def test_bias_features_alone_do_not_solve_the_training_task(splits):
    """The shortcuts are strong but not sufficient (as in MultiNLI): a bias-only model is well
    below a model that reads both sentences, so debiasing has examples to re-weight."""
    train = splits["train"]
    model = fit_bias_model(train, "features", 0)
    probs = model.predict_proba(train)
    gold = train.label.map({name: i for i, name in enumerate(model.label_names)}).to_numpy()
    assert 0.5 < (probs.argmax(axis=1) == gold).mean() < 0.75
    assert probs[np.arange(len(gold)), gold].mean() < 0.7
