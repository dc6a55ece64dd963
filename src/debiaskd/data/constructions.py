"""Vocabulary-free signatures of NLI pairs, to check that challenge constructions are held out.

A challenge construction measures generalisation only when no training or augmentation pair
has the same shape (see REFERENCES.md, "Pitfalls"). Names of recipes prove little (a renamed
copy of a recipe has a new name), so the check compares *normalised signatures*: every word of
the embedded benchmark's lexicon is mapped to its category (``N`` nouns and names, ``ADJ``,
``V`` any verb form, ``PLACE``, ``ADVM``/``ADVC``/``ADVU`` manner / certainty / uncertainty
adverbs, ``FACT``/``NONF`` factive / non-factive verbs, ``DET`` articles), function words
("not", "who", "by", "since", …) are kept literally, and the hypothesis's content words are
aligned to their first position among the premise's content words (``-1`` when absent). Two
pairs with the same signature are the same construction filled with other words.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from debiaskd.data import generate_nli as g

Signature = tuple[str, str, tuple[int, ...]]


@functools.lru_cache(maxsize=1)
def categories() -> dict[str, str]:
    """Lower-cased lexicon word → category (later assignments win, so "knew" is ``FACT``)."""
    cats: dict[str, str] = {}
    for w in g.NOUNS:
        cats[w] = "N"
    for w in g.NAMES:
        cats[w.lower()] = "N"
    for w in (*g.ADJECTIVES, *g.PRED_ADJECTIVES):
        cats[w] = "ADJ"
    for v in (*g.INTRANSITIVE, *g.TRANSITIVE):
        for form in (v.base, v.past, v.participle):
            cats[form] = "V"
    for w in g.PLACES:
        cats[w] = "PLACE"
    for w in g.MANNER_ADVERBS:
        cats[w] = "ADVM"
    for w in g.CERTAIN_ADVERBS:
        cats[w] = "ADVC"
    for w in g.UNCERTAIN_ADVERBS:
        cats[w] = "ADVU"
    for w in g.FACTIVE_VERBS:
        cats[w] = "FACT"
    for w in g.NONFACTIVE_VERBS:
        cats[w] = "NONF"
    for w in ("a", "an", "the"):
        cats[w] = "DET"
    return cats


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z']+", str(text).lower())


def signature(premise: str, hypothesis: str) -> Signature:
    """The pair's shape: (premise categories, hypothesis categories, alignment of content words)."""
    cats = categories()
    pt, ht = _tokens(premise), _tokens(hypothesis)
    content = [t for t in pt if t in cats and cats[t] != "DET"]
    align = tuple(content.index(t) if t in content else -1 for t in ht if t in cats and cats[t] != "DET")
    return (" ".join(cats.get(t, t) for t in pt), " ".join(cats.get(t, t) for t in ht), align)


def signatures(pairs: Iterable[tuple[str, str]]) -> set[Signature]:
    return {signature(p, h) for p, h in pairs}


def overlap(pairs: Iterable[tuple[str, str]], reference: set[Signature]) -> float:
    """Share of ``pairs`` whose signature occurs in ``reference`` (0.0 for no pairs)."""
    sigs = [signature(p, h) for p, h in pairs]
    return sum(s in reference for s in sigs) / len(sigs) if sigs else 0.0
