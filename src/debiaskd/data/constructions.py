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
    verbs = [form for v in (*g.INTRANSITIVE, *g.TRANSITIVE) for form in (v.base, v.past, v.participle)]
    table = (  # in this order: a later category wins for a word in two lists
        ("N", g.NOUNS), ("N", [w.lower() for w in g.NAMES]), ("ADJ", (*g.ADJECTIVES, *g.PRED_ADJECTIVES)),
        ("V", verbs), ("PLACE", g.PLACES), ("ADVM", g.MANNER_ADVERBS), ("ADVC", g.CERTAIN_ADVERBS),
        ("ADVU", g.UNCERTAIN_ADVERBS), ("FACT", g.FACTIVE_VERBS), ("NONF", g.NONFACTIVE_VERBS),
        ("DET", ("a", "an", "the")),
    )
    cats: dict[str, str] = {}
    for category, words in table:
        for w in words:
            cats[w] = category
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
