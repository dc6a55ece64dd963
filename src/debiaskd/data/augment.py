"""Bias-aware counter-examples with a quality filter (the augmentation intervention).

NLI recipes (each writes the recipe name into ``template`` and ``construction``; new ``pair_id``s
start ``aug-``):

================== ================================================== ======== ===================
recipe             construction                                       label    applies to
================== ================================================== ======== ===================
``role_swap``      "S V O." → "O V S." (full overlap, not entailed)   neutral  simple clauses of the
                                                                               generator's grammar
``embedded_claim`` "The N believed that X." → "X." (overlap,          neutral  any short declarative
                   non-factive verb: not entailed)                             sentence (real too)
``negated_conjunct`` "X, and Y." → "X." with X negated (negation cue, entail-  any sentences X (with
                   yet entailed: conjunction elimination)             ment     a negation word), Y
``factive_negated`` "The N knew that X." → "X." with X negated        entail-  any negated sentence X
                                                                      ment
================== ================================================== ======== ===================

``role_swap`` needs parse structure, so it only fires on sentences matching the generator's
simple transitive clause (``The [adj] N | Name`` + past-tense verb + object); the others
embed whole sentences and so also work on real MultiNLI / SICK rows (the sentence is lower-cased
only when it starts with a determiner). The quality filter scores each candidate in [0, 1]:
hard failures (score 0) are duplicates of train or of earlier candidates, premise == hypothesis,
too long (more than :data:`MAX_WORDS` words), doubled words, a sentence that does not end
as a statement, or a label the recipe cannot guarantee (the embedded sentence has a modal
or a question, or lacks the negation the recipe needs); soft penalties (digits, quotes,
parentheses, very long sentences) lower the score, which must reach ``min_quality``.

Constructions: augmentation teaches the shapes it builds, so it may only build shapes of challenge
subcases declared *seen* (:data:`debiaskd.data.generate_nli.CHALLENGE_DESIGN`), never a held-out
one. :data:`RECIPE_SUBCASES` names the subcases each recipe mirrors (``role_swap`` is
``ln_subject/object_swap``, ``embedded_claim`` is ``cn_embedded_under_verb`` — only with an
un-negated clause, since the negated one is the held-out ``nn_negated_under_nonfactive`` —
``factive_negated`` is ``ne_factive_complement``; ``negated_conjunct`` joins with ", and" where
``ne_negated_conjunct`` has ", but"); a recipe mirroring a held-out subcase is not used, and a
test checks on normalised signatures that no augmented pair has a held-out subcase's shape.
Vision: colour-flipped copies of bias-aligned training digits (bias-conflicting examples).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter

import numpy as np
import pandas as pd

from debiaskd.core.config import AugmentConfig
from debiaskd.data.generate_nli import (
    ADJECTIVES,
    CHALLENGE_DESIGN,
    NAMES,
    NONFACTIVE_VERBS,
    NOUNS,
    TRANSITIVE,
    has_negation,
    heuristic_of,
    words,
)
from debiaskd.data.generate_nli import (
    bias_aligned as _aligned,
)
from debiaskd.data.generate_vision import colorize
from debiaskd.data.schema import COLOR_NAMES, COLOR_RGB, NLI_COLUMNS, ImageSplit, nli_group

MAX_WORDS = 40
RECIPES: tuple[str, ...] = ("role_swap", "embedded_claim", "negated_conjunct", "factive_negated")
#: recipe → the challenge subcases of the same construction (each must be declared seen)
RECIPE_SUBCASES: dict[str, tuple[str, ...]] = {
    "role_swap": ("ln_subject/object_swap",), "embedded_claim": ("cn_embedded_under_verb",),
    "negated_conjunct": (), "factive_negated": ("ne_factive_complement",),
}


def allowed_recipes() -> tuple[str, ...]:
    """The recipes whose constructions are not held out from the challenge."""
    return tuple(r for r in RECIPES if all(CHALLENGE_DESIGN[sub].seen for sub in RECIPE_SUBCASES[r]))
FACTIVE = ("knew", "realized", "noticed", "remembered", "discovered")
_DETERMINERS = {"the", "a", "an", "this", "that", "these", "those", "some", "many", "most", "all",
                "every", "each", "his", "her", "their", "our", "my", "its", "there", "it", "he", "she",
                "they", "we", "nobody", "no", "several", "few", "one", "two"}
_MODALS = {"may", "might", "could", "would", "should", "can", "must", "will", "if", "unless", "or",
           "perhaps", "maybe", "probably"}
_NP = (r"(?:the (?:(?:" + "|".join(ADJECTIVES) + r") )?(?:" + "|".join(sorted(set(NOUNS))) + r")|"
       + "|".join(NAMES) + ")")
_VERB = "(?:" + "|".join(v.past for v in TRANSITIVE) + ")"
_SIMPLE = re.compile(rf"^({_NP}) ({_VERB}) ({_NP})\.$", re.IGNORECASE)


def _clean(sentence: str) -> str:
    return " ".join(str(sentence).split())


def _as_clause(sentence: str, lowercase_words: frozenset[str] = frozenset()) -> str:
    """A sentence as an embedded clause: no final period; the first word lower-cased when it is a
    determiner or a word the data otherwise writes in lower case (so names and "I" keep theirs)."""
    s = _clean(sentence).rstrip(".")
    first = s.split(" ", 1)[0]
    low = first.lower()
    if low in _DETERMINERS or (low != "i" and not low.startswith("i'") and low in lowercase_words):
        return low + s[len(first):]
    return s


def _inner(np_: str) -> str:
    return "the" + np_[3:] if np_.lower().startswith("the ") else np_


def _cap(s: str) -> str:
    return s[0].upper() + s[1:] if s else s


def quality(premise: str, hypothesis: str, needs_negation: bool = False,
            embedded: str | tuple[str, ...] = "") -> tuple[float, str]:
    """Score a candidate in [0, 1] and name the reason of the biggest penalty ("" when clean)."""
    for text in (premise, hypothesis):
        toks = text.split()
        if not toks:
            return 0.0, "empty"
        if len(toks) > MAX_WORDS:
            return 0.0, "too long"
        if not re.search(r"[.!]$", text):
            return 0.0, "not a statement"
        low = [w.lower() for w in toks]
        if any(a == b for a, b in itertools.pairwise(low)):
            return 0.0, "doubled word"
    if premise == hypothesis:
        return 0.0, "identical"
    for k, part in enumerate((embedded,) if isinstance(embedded, str) else embedded):
        if not part:
            continue
        if re.search(r"[.!?]\s", part.strip()):
            return 0.0, "several sentences"
        if set(words(part)) & _MODALS or "?" in part:
            return 0.0, "label not guaranteed (modal/condition/question)"
        if needs_negation and k == 0 and not has_negation(part):
            return 0.0, "label not guaranteed (no negation)"
    score, reason = 1.0, ""
    text = premise + " " + hypothesis
    for pattern, penalty, why in ((r"\d", 0.2, "digits"), (r"[\"“”]", 0.3, "quotes"), (r"[()\[\]]", 0.3, "brackets"),
                                  (r";|:|--", 0.2, "clause punctuation")):
        if re.search(pattern, text):
            score -= penalty
            reason = reason or why
    if len(premise.split()) > 25:
        score -= 0.3
        reason = reason or "long"
    return max(0.0, round(score, 4)), reason


def _sentences(train: pd.DataFrame) -> list[str]:
    pool = list(dict.fromkeys([_clean(s) for s in pd.concat([train["premise"], train["hypothesis"]]).astype(str)]))
    return [s for s in pool if s]


def _candidates(recipe: str, s: _Draw) -> tuple[str, str, str | tuple[str, str], bool] | None:
    """(premise, hypothesis, embedded sentence, needs negation) for one draw of a recipe."""
    if recipe == "role_swap":
        if not s.simple:
            return None
        m = _SIMPLE.match(s.pick(s.simple))
        subj, verb, obj = m.group(1), m.group(2), m.group(3)
        if subj.lower() == obj.lower():
            return None
        return _cap(f"{subj} {verb} {obj}."), _cap(f"{_inner(obj)} {verb} {_inner(subj)}."), "", False
    low = s.lowercase_words
    if recipe == "embedded_claim":  # never a negated clause: that is nn_negated_under_nonfactive (held out)
        x = s.pick(s.plain)
        return (f"The {s.pick(NOUNS)} {s.pick(NONFACTIVE_VERBS)} that {_as_clause(x, low)}.", x, x, False)
    if not s.negated:
        return None
    x = s.pick(s.negated)
    if recipe == "negated_conjunct":
        y = s.pick(s.plain or s.negated)
        return f"{_cap(_as_clause(x, low))}, and {_as_clause(y, low)}.", x, (x, y), True
    return f"The {s.pick(NOUNS)} {s.pick(FACTIVE)} that {_as_clause(x, low)}.", x, x, True


class _Draw:
    def __init__(self, train: pd.DataFrame, rng: np.random.Generator) -> None:
        self.rng = rng
        pool = [s for s in _sentences(train) if s.endswith(".") and len(s.split()) <= 20]
        self.simple = [s for s in pool if _SIMPLE.match(s)]
        self.negated = [s for s in pool if has_negation(s)]
        self.plain = [s for s in pool if not has_negation(s)]
        self.lowercase_words = frozenset(w for s in pool for w in s.split()[1:] if w.islower())

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]


def augment_nli_with_stats(train: pd.DataFrame, cfg: AugmentConfig, seed: int) -> tuple[pd.DataFrame, dict]:
    """New counter-example rows and the filter's statistics (accepted, rejected, reasons)."""
    rng = np.random.default_rng(np.random.PCG64([seed, cfg.seed]))
    target = round(cfg.ratio * len(train))
    three_way = train["label"].astype(str).isin(["neutral", "contradiction"]).any() or not len(train)
    neutral = "neutral" if three_way else "non-entailment"
    draw = _Draw(train, rng)
    seen = set(zip(train["premise"].astype(str).map(_clean), train["hypothesis"].astype(str).map(_clean), strict=True))
    rows: list[dict] = []
    rejected: Counter[str] = Counter()
    usable = [r for r in allowed_recipes() if _candidates(r, draw) is not None] if target else []
    attempts, k = 0, 0
    while len(rows) < target and usable and attempts < 20 * target + 100:
        attempts += 1
        recipe = usable[k % len(usable)]
        k += 1
        cand = _candidates(recipe, draw)
        if cand is None:
            rejected["recipe not applicable"] += 1
            continue
        premise, hyp, embedded, needs_neg = cand
        score, reason = quality(premise, hyp, needs_neg, embedded)
        if (premise, hyp) in seen:
            score, reason = 0.0, "duplicate"
        if score < cfg.min_quality:
            rejected[reason or "low quality"] += 1
            continue
        seen.add((premise, hyp))
        label = "entailment" if recipe in ("negated_conjunct", "factive_negated") else neutral
        heur = heuristic_of(premise, hyp)
        rows.append({"pair_id": f"aug-{len(rows):05d}", "premise": premise, "hypothesis": hyp, "label": label,
                     "heuristic": heur, "subcase": "", "template": recipe,
                     "bias_aligned": _aligned(heur, label), "group": nli_group(heur, label),
                     "construction": recipe})
    out = pd.DataFrame(rows, columns=[*NLI_COLUMNS, "construction"])
    out["bias_aligned"] = out["bias_aligned"].astype(bool)
    stats = {"target": target, "accepted": len(out), "rejected": int(sum(rejected.values())),
             "reasons": dict(sorted(rejected.items())), "recipes": dict(Counter(out["template"]))}
    return out, stats


def augment_nli(train: pd.DataFrame, cfg: AugmentConfig, seed: int) -> pd.DataFrame:
    """Only the new rows (schema columns); ``.attrs["rejected"]`` counts filtered candidates."""
    out, stats = augment_nli_with_stats(train, cfg, seed)
    out.attrs["rejected"] = stats["rejected"]
    out.attrs["stats"] = stats
    return out


def augment_vision(train: ImageSplit, cfg: AugmentConfig, seed: int) -> ImageSplit:
    """Colour-flipped copies of bias-aligned digits (new colour ≠ the label's colour).

    Only coloured digits can be recoloured; other data (Waterbirds) yields an empty split.
    Candidates whose digit is too faint (peak intensity below ``min_quality``) are rejected.
    """
    rng = np.random.default_rng(np.random.PCG64([seed, cfg.seed, 1]))
    frame = train.frame
    empty = ImageSplit(train.images[:0], frame.iloc[:0].reset_index(drop=True), train.class_names, train.group_names)
    if tuple(train.group_names) != COLOR_NAMES or len(train) == 0:
        empty.frame.attrs["rejected"] = 0
        return empty
    target = round(cfg.ratio * len(train))
    aligned = np.flatnonzero(frame["bias_aligned"].to_numpy(dtype=bool))
    if target == 0 or len(aligned) == 0:
        empty.frame.attrs["rejected"] = 0
        return empty
    picks = rng.choice(aligned, size=target, replace=target > len(aligned))
    color_idx = np.array([COLOR_NAMES.index(c) for c in frame["color"].to_numpy()[picks]])
    channel = np.argmax(np.asarray(COLOR_RGB)[color_idx], axis=1)
    imgs = train.images[picks].astype(np.float32)
    gray = imgs[np.arange(len(picks)), channel] / 255.0  # the full-intensity channel holds the digit
    keep = gray.reshape(len(gray), -1).max(axis=1) >= cfg.min_quality
    labels = frame["label"].to_numpy()[picks].astype(np.int64)
    new_images, colors = colorize(gray, labels, 0.0, rng, gray.shape[-1])
    clash = colors == labels % len(COLOR_NAMES)
    colors[clash] = (colors[clash] + 1 + rng.integers(0, len(COLOR_NAMES) - 1, clash.sum())) % len(COLOR_NAMES)
    rgb = np.asarray(COLOR_RGB, dtype=np.float32)[colors]
    new_images = np.clip(np.rint(gray[:, None] * rgb[:, :, None, None] * 255.0), 0, 255).astype(np.uint8)
    idx = np.flatnonzero(keep)
    out_frame = pd.DataFrame({
        "image_id": [f"aug-{frame['image_id'].iloc[picks[i]]}-{j}" for j, i in enumerate(idx)],
        "label": labels[idx], "color": [COLOR_NAMES[c] for c in colors[idx]],
        "bias_aligned": np.zeros(len(idx), dtype=bool),
        "group": [f"{labels[i]}/{COLOR_NAMES[colors[i]]}" for i in idx],
    })
    out_frame.attrs["rejected"] = int((~keep).sum())
    return ImageSplit(np.ascontiguousarray(new_images[idx]), out_frame, train.class_names, train.group_names)
