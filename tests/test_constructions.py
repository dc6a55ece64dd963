"""Challenge constructions: held-out ones never occur in training or augmentation (by id and by
normalised signature), seen ones do, and the two challenge splits share none."""

from __future__ import annotations

import collections
import inspect
import types

import pandas as pd
import pytest

from debiaskd.core.config import AugmentConfig, NLIDataConfig
from debiaskd.data import augment as A
from debiaskd.data import generate_nli as g
from debiaskd.data.constructions import overlap, signature, signatures

SEEDS = (0, 1, 2)
N_TRAIN = 6000  # per seed: 18,000 training pairs plus as many augmented ones
N_PER_SUBCASE = 200
HELD_OUT = {sub for sub, d in g.CHALLENGE_DESIGN.items() if not d.seen}
SEEN = {sub for sub, d in g.CHALLENGE_DESIGN.items() if d.seen}


def _cfg(seed: int, n_train: int = N_TRAIN, n_per_subcase: int = 2) -> NLIDataConfig:
    return NLIDataConfig(n_train=n_train, n_validation=10, n_test=10, n_challenge_per_subcase=n_per_subcase,
                         seed=seed)


@pytest.fixture(scope="module")
def training() -> pd.DataFrame:
    """Training, validation and test pairs of three seeds plus their augmentation (ratio 1)."""
    frames = []
    for seed in SEEDS:
        splits = g.generate_nli(_cfg(seed))
        frames += [splits["train"], splits["validation"], splits["test"]]
        frames.append(A.augment_nli(splits["train"], AugmentConfig(ratio=1.0), seed=seed))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def reference(training) -> dict:
    """signature → the constructions (training sub-kinds, augmentation recipes) that produce it."""
    out: dict = collections.defaultdict(set)
    for p, h, c in zip(training.premise, training.hypothesis, training.construction, strict=True):
        out[signature(p, h)].add(c)
    return out


@pytest.fixture(scope="module")
def challenge() -> pd.DataFrame:
    splits = g.generate_nli(_cfg(seed=7, n_train=30, n_per_subcase=N_PER_SUBCASE))
    return pd.concat([splits["challenge"], splits["challenge_dev"]], ignore_index=True)


def test_design_covers_every_subcase_and_both_labels_in_both_splits():
    table = pd.DataFrame(g.subcase_table())
    assert set(table.subcase) == set(g.CHALLENGE_DESIGN) and table.subcase.is_unique
    assert set(table.split) == {"challenge", "challenge_dev"}
    assert (table[table.seen].split == "challenge").all()  # seen subcases are reported apart, never for choices
    held = table[~table.seen]
    for heuristic in g.CHALLENGE_SUBCASES:
        for label in ("entailment", "non-entailment"):
            cell = held[(held.heuristic == heuristic) & (held.label == label)]
            assert set(cell.split) == {"challenge", "challenge_dev"}, (heuristic, label)


def test_generated_rows_carry_the_design():
    splits = g.generate_nli(_cfg(seed=1, n_train=60, n_per_subcase=3))
    for name in ("challenge", "challenge_dev"):
        ch = splits[name]
        assert (ch.construction == ch.subcase).all()
        assert all(g.CHALLENGE_DESIGN[s].split == name for s in ch.subcase)
        assert (ch.construction_seen == ch.subcase.map(lambda s: g.CHALLENGE_DESIGN[s].seen)).all()
    assert not set(splits["challenge"].construction) & set(splits["challenge_dev"].construction)
    for name in ("train", "validation", "test"):
        assert splits[name].construction.str.split("/").str[0].isin(
            [t for t, _ in g.TRAIN_RECIPES.values()]).all()


def _reachable_functions(fn: types.FunctionType, namespace: dict) -> set[str]:
    """Names of the module-level functions ``fn`` calls, transitively."""
    seen: set[str] = set()
    todo = [fn]
    while todo:
        code = todo.pop().__code__
        names = set(code.co_names)
        for const in code.co_consts:  # nested code (lambdas, comprehensions)
            if isinstance(const, types.CodeType):
                names |= set(const.co_names)
        for name in names:
            obj = namespace.get(name)
            if isinstance(obj, types.FunctionType) and name not in seen:
                seen.add(name)
                todo.append(obj)
    return seen


def test_disjoint_by_construction_id(training):
    # no training / augmentation construction is named like a held-out subcase ...
    assert not set(training.construction) & HELD_OUT
    # ... and no training or augmentation recipe calls a held-out subcase's recipe function
    held_fns = {recipe.__name__ for subs in g.CHALLENGE_SUBCASES.values() for sub, _, recipe in subs
                if sub in HELD_OUT}
    for template, recipe in g.TRAIN_RECIPES.values():
        assert not _reachable_functions(recipe, vars(g)) & held_fns, template
    aug_fns = [f for _, f in inspect.getmembers(A, inspect.isfunction) if f.__module__ == A.__name__]
    for fn in aug_fns:
        called = _reachable_functions(fn, vars(A)) | set(fn.__code__.co_names)
        assert not called & held_fns, fn.__name__
    # augmentation uses only recipes whose mirrored subcases are declared seen
    assert A.allowed_recipes() == A.RECIPES
    assert all(sub in SEEN for subs in A.RECIPE_SUBCASES.values() for sub in subs)


def test_disjoint_by_signature_and_seen_flags_agree_with_the_measurement(reference, challenge):
    measured = {}
    for sub, part in challenge.groupby("subcase", sort=False):
        via = collections.Counter()
        for p, h in zip(part.premise, part.hypothesis, strict=True):
            via.update(reference.get(signature(p, h), ()))
        measured[sub] = (overlap(zip(part.premise, part.hypothesis, strict=True), set(reference)), set(via))
    assert set(measured) == set(g.CHALLENGE_DESIGN)
    leaks = {sub: m for sub, m in measured.items() if sub in HELD_OUT and m[0] > 0}
    assert not leaks, f"held-out subcases whose shape training or augmentation builds: {leaks}"
    unseen = {sub: m for sub, m in measured.items() if sub in SEEN and m[0] == 0}
    assert not unseen, f"subcases declared seen that no training or augmentation pair matches: {unseen}"
    for sub in SEEN:  # the declared sources of the overlap are the measured ones
        assert measured[sub][1] == set(g.CHALLENGE_DESIGN[sub].seen_via), sub


def test_challenge_splits_are_disjoint_in_signature(challenge):
    dev = challenge[challenge.subcase.map(lambda s: g.CHALLENGE_DESIGN[s].split == "challenge_dev")]
    test = challenge[challenge.subcase.map(lambda s: g.CHALLENGE_DESIGN[s].split == "challenge")]
    assert not set(dev.construction) & set(test.construction)
    assert overlap(zip(dev.premise, dev.hypothesis, strict=True),
                   signatures(zip(test.premise, test.hypothesis, strict=True))) == 0.0


def test_signature_catches_a_renamed_copy_of_a_challenge_recipe(monkeypatch, challenge):
    """A held-out recipe smuggled into training under another name: the id check passes, the
    signature check does not."""
    smuggled = types.FunctionType(g._ln_passive.__code__, vars(g), "_n_innocent_looking")
    monkeypatch.setitem(g.TRAIN_RECIPES, ("neutral", "lexical_overlap"), ("innocent_looking", smuggled))
    train = g.generate_nli(_cfg(seed=0, n_train=1500))["train"]
    assert not set(train.construction) & HELD_OUT  # the names say nothing
    ref = signatures(zip(train.premise, train.hypothesis, strict=True))
    part = challenge[challenge.subcase == "ln_passive"]
    assert overlap(zip(part.premise, part.hypothesis, strict=True), ref) > 0.5
    # vocabulary does not matter, function words and alignment do
    assert signature("Anna helped the doctor.", "The doctor helped Anna.") == signature(
        "Ben called the lawyer.", "The lawyer called Ben.")
    assert signature("Anna helped the doctor.", "The doctor helped Anna.") != signature(
        "Anna helped the doctor.", "Anna helped the doctor.")
    assert signature("Anna did not sleep.", "Anna slept.") != signature("Anna did sleep.", "Anna slept.")
