"""The embedded NLI bias benchmark: a deterministic generator of short English pairs.

Written for this project (the facts it mirrors come from McCoy et al. 2019, HANS, and from
the negation cue of MultiNLI; no code is taken from anywhere).

**Training distribution** (``train``, ``validation``, ``test``; three labels, balanced).
The shortcuts are strong but not sufficient, as in MultiNLI (:func:`train_plan`): each cue
(full lexical overlap; a negation word in the hypothesis) gets ``CUE_SHARE`` of a label's
count; of those pairs ``bias_strength`` are *bias-aligned* and the rest are split between the
two other labels; every other pair carries no cue (heuristic ``none``), so every label occurs
under every heuristic and a bias-only model is far from perfect.

- *entailment* — ``lexical_overlap`` (aligned): the hypothesis is the premise minus a modifier
  (adjective, PP, adverb, conjunct, relative clause) or minus a clause or frame (a conjoined or
  "because" clause, a factive "knew that", a "certainly"); ``negation`` (anti-bias): a negated
  hypothesis still entailed because the premise is negated too ("Nobody saw X" → "The doctor
  did not see X"; a negated conjunct or factive complement; a dropped subject adjective; an
  added modifier under negation); ``none``: a hypernym ("someone", "a building"), a synonym
  verb, "there was a doctor who …", "was near the bank", often after dropping a modifier.
- *neutral* — ``none``: the hypothesis adds information (a PP, an adjective, an adverb, another
  verb, object, subject or activity, an unrelated trait, a specific noun for a general one);
  ``lexical_overlap`` (anti-bias): full overlap but not entailed (subject/object swap; a clause
  under "it is unclear whether"); ``negation`` (anti-bias): a negated premise and a negated
  claim about someone or something else.
- *contradiction* — ``negation`` (aligned): the premise clause negated with "not", "never",
  "nobody" or "no N"; ``lexical_overlap`` (anti-bias): antonyms with full overlap ("A was
  happy, but B was sad" → "A was sad"); ``none``: an antonym adjective or adverb, incompatible
  activities or states ("slept" / "ran", "sang" / "was silent"), opposite locations.

Several training constructions are challenge constructions too: the anti-bias subject/object
swap *is* ``ln_subject/object_swap``; dropping a modifier or a clause builds ``le_relative_clause``,
``se_adjective``/``se_conjunction``/``se_PP_on_VP`` and ``ce_after_since_clause``/
``ce_embedded_under_verb``/``ce_adverb``/``ce_conjunction``; ``negated_entailed`` builds every
original ``ne_*`` subcase; ``negated_clause`` builds ``nn_negated_clause``/``nn_nobody``. Those
subcases are declared *seen* (see below) and reported apart.

So high overlap goes with entailment and a negation word in the hypothesis goes with
contradiction, with strength ``bias_strength``; the real signal (dropping material preserves
truth, adding material does not, negation contradicts only what the premise asserts, word
meanings) is there for a model that reads both sentences. The declared heuristic of every
training pair is what :func:`heuristic_of` finds in its text.

**Challenge split** (HANS layout, two-way gold labels ``entailment`` / ``non-entailment``).
For each HANS heuristic (``lexical_overlap``, ``subsequence``, ``constituent``) five entailed
(``le_``/``se_``/``ce_``; constituent a sixth, ``ce_before_so_clause``) and five non-entailed
(``ln_``/``sn_``/``cn_``) subcases; every
hypothesis is made only of premise words, so the heuristic predicts *entailment* and is
wrong on the non-entailed half. The **negation group** (heuristic ``negation``) holds pairs
whose hypothesis contains a negation word; the cue predicts *non-entailment*. Its rule:
the gold label is ``entailment`` exactly when the negated hypothesis is still entailed by the
premise (the premise is negated as well: a negated conjunct, "nobody"/"no N" instantiated,
a negated complement of a factive verb, a dropped subject adjective, a negated "since" clause,
a negated passive, a dropped relative clause) — subcases ``ne_*``, bias-conflicting — and
``non-entailment`` when the hypothesis contradicts the premise or adds an unsupported negated
claim (also: a negated "if" clause, a negated active of a passive) — subcases ``nn_*``,
bias-aligned. The subcases are divided between two splits, ``challenge`` and ``challenge_dev``
(see *Constructions*).
Every subcase has ``n_challenge_per_subcase`` pairs.

**Constructions.** Every pair carries ``construction``: ``template/kind`` for training-like rows
(the recipe and the sub-kind it built, e.g. ``drop_modifier/relative``), the subcase for challenge
rows. :data:`CHALLENGE_DESIGN` declares per subcase whether it is *seen* (training or the
augmentation builds pairs of the same normalised signature, :mod:`debiaskd.data.constructions`)
or held out from both, and its split: ``challenge_dev`` (choosing recipes, early stopping) or
``challenge`` (reporting). Seen subcases stay in ``challenge`` with ``construction_seen = True``;
held-out ones are divided so that every (heuristic, gold label) has held-out subcases in both
splits, which share no construction. Held-out constructions added for that (none of them is
built by a training recipe): ``ce_before_so_clause`` ("A, so B." → "A."), ``ne_negated_under_since``
("Since A did not V B, C V-ed." → "A did not V B."), ``ne_passive`` ("B was not V-ed by A." →
"A did not V B."), ``ne_relative_clause`` ("The N who V-ed M did not V2 O." → "The N did not V2
O."), ``nn_negated_under_if`` ("If A did not V B, C V-ed." → "A did not V B.") and ``nn_passive``
("B was V-ed by A." → "A did not V B.").

No (premise, hypothesis) pair appears in two splits (one shared set of seen pairs while
generating, in the fixed order train → validation → test → challenge subcases, each written to
its challenge split). Sentences are at most
:data:`MAX_WORDS` words. Randomness comes only from ``cfg.seed`` (numpy PCG64).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from debiaskd.core.config import NLIDataConfig
from debiaskd.data.schema import CONSTRUCTION_COLUMNS, NLI_COLUMNS, NLI_LABELS, nli_group

MAX_WORDS = 20
NEGATION_WORDS: tuple[str, ...] = ("not", "never", "no", "nobody", "nothing", "none", "neither", "nor",
                                   "n't", "cannot")

# ----------------------------------------------------------------------------- lexicon
NOUNS = (
    "doctor", "lawyer", "artist", "student", "banker", "secretary", "tourist", "author", "actor",
    "senator", "judge", "manager", "athlete", "scientist", "professor", "president", "dancer",
    "farmer", "teacher", "pilot", "nurse", "chef", "singer", "painter", "soldier", "writer", "baker",
    "clerk", "editor", "poet", "sailor", "dentist", "engineer", "architect", "musician", "journalist",
    "officer", "detective", "gardener", "plumber", "librarian", "pharmacist", "surgeon", "mechanic",
    "cashier", "waiter", "tailor", "carpenter", "violinist", "director", "coach", "captain",
    "reporter", "photographer", "designer", "guard", "merchant", "banker", "student", "firefighter",
)
NAMES = (
    "Anna", "Ben", "Carlos", "Diana", "Elena", "Farid", "Grace", "Hiro", "Ivan", "Julia", "Kofi",
    "Lena", "Marco", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wei",
    "Yara", "Zoe", "Mateo", "Ines", "Pavel", "Amara", "Jonas",
)
ADJECTIVES = (
    "old", "young", "tall", "happy", "tired", "famous", "quiet", "clever", "angry", "busy",
    "friendly", "nervous", "proud", "brave", "calm", "rich", "polite", "curious", "careful", "lucky",
    "shy", "strong", "kind", "honest", "cheerful", "patient", "serious", "generous", "modest", "bored",
)
#: predicate adjectives with an incompatible partner (copula contradictions)
ANTONYMS: tuple[tuple[str, str], ...] = (
    ("happy", "sad"), ("tall", "short"), ("rich", "poor"), ("young", "old"), ("awake", "asleep"),
    ("healthy", "sick"), ("strong", "weak"), ("calm", "angry"), ("polite", "rude"), ("busy", "idle"),
    ("hungry", "full"), ("early", "late"), ("quiet", "loud"), ("cheerful", "gloomy"),
    ("present", "absent"), ("brave", "afraid"), ("honest", "dishonest"), ("generous", "selfish"),
)
PRED_ADJECTIVES = tuple(a for pair in ANTONYMS for a in pair)


@dataclass(frozen=True)
class Verb:
    base: str
    past: str
    participle: str

    @property
    def regular(self) -> bool:
        """Past tense equals participle (so an active hypothesis overlaps a passive premise)."""
        return self.past == self.participle


def _v(spec: str) -> Verb:
    parts = spec.split("/")
    if len(parts) == 1:  # regular verb given by its base
        base = parts[0]
        past = base + "d" if base.endswith("e") else base + "ed"
        return Verb(base, past, past)
    return Verb(*parts)


INTRANSITIVE = tuple(_v(s) for s in (
    "sleep/slept/slept", "run/ran/run", "dance", "wait", "laugh", "smile", "arrive", "leave/left/left",
    "shout", "stay", "rest", "work", "travel", "cry/cried/cried", "swim/swam/swum", "sing/sang/sung",
    "perform", "resign", "sneeze", "paint", "cook", "relax", "complain", "whistle",
))
TRANSITIVE = tuple(_v(s) for s in (
    "help", "admire", "call", "thank", "watch", "follow", "visit", "contact", "support", "recommend",
    "encourage", "avoid", "introduce", "mention", "advise", "question", "praise", "greet", "invite",
    "blame", "trust", "protect", "warn", "ignore", "hire", "interview", "pay/paid/paid",
    "meet/met/met", "find/found/found", "see/saw/seen", "know/knew/known", "hear/heard/heard",
    "stop/stopped/stopped", "tell/told/told",
))
PASSIVE_VERBS = tuple(v for v in TRANSITIVE if v.regular and v.base not in ("hear", "find"))
PREPOSITIONS = ("near", "behind", "beside", "by", "at", "in", "outside", "inside")
PLACES = (
    "bank", "park", "station", "library", "museum", "river", "garden", "market", "hotel", "theater",
    "school", "stadium", "office", "airport", "hospital", "harbor", "bakery", "gallery", "factory",
    "church", "cafe", "castle",
)
PERSON_PREPOSITIONS = ("near", "behind", "beside", "next to")
MANNER_ADVERBS = ("quietly", "quickly", "slowly", "happily", "carefully", "loudly", "calmly",
                  "patiently", "politely", "suddenly", "eagerly", "proudly")
CERTAIN_ADVERBS = ("certainly", "clearly", "definitely", "obviously", "undoubtedly", "surely")
UNCERTAIN_ADVERBS = ("perhaps", "maybe", "probably", "supposedly", "hopefully", "possibly")
FACTIVE_VERBS = ("knew", "realized", "learned", "noticed", "remembered", "forgot", "discovered",
                 "understood")
NONFACTIVE_VERBS = ("believed", "thought", "hoped", "said", "claimed", "suspected", "assumed",
                    "imagined", "feared", "guessed")
NP_S_VERBS = ("knew", "believed", "heard", "remembered", "forgot", "understood", "noticed",
              "suspected")
SOMEONE = ("someone", "somebody", "a person")
BUILDINGS = tuple(p for p in PLACES if p not in ("park", "river", "garden", "market", "harbor"))
#: verb base → a past-tense synonym (entailment without full overlap)
SYNONYMS = {"help": "assisted", "watch": "observed", "hire": "employed", "praise": "complimented",
            "ignore": "disregarded", "call": "phoned", "warn": "alerted", "tell": "informed",
            "find": "located", "shout": "yelled", "cry": "wept", "leave": "departed", "resign": "quit"}
#: adjectives that neither follow from nor clash with an action
TRAITS = ("tall", "famous", "clever", "rich", "kind", "honest", "shy", "proud", "polite", "curious",
          "generous", "modest")
#: intransitive activities one person can do on the same occasion (neither follows from another)
COMPATIBLE_ACTIVITIES = ("dance", "wait", "laugh", "smile", "sing", "perform", "paint", "cook", "whistle",
                         "work", "complain")
#: activities incompatible with sleeping
AWAKE_ACTIVITIES = ("run", "dance", "swim", "work", "perform", "cook", "paint", "shout")
INCOMPATIBLE_STATES = (("sleep", "was awake"), ("sleep", "stayed awake"), ("sing", "was silent"),
                       ("shout", "was silent"), ("whistle", "was silent"), ("laugh", "was silent"),
                       ("run", "sat still"), ("dance", "sat still"), ("swim", "stayed dry"))
ADVERB_ANTONYMS = (("quietly", "loudly"), ("quickly", "slowly"), ("calmly", "nervously"), ("happily", "sadly"),
                   ("carefully", "carelessly"), ("politely", "rudely"), ("patiently", "impatiently"),
                   ("eagerly", "reluctantly"))
LOCATION_ANTONYMS = (("inside", "outside"), ("near", "far from"), ("in front of", "behind"))
#: share of each label's count given to each shortcut (lexical overlap, negation) in training
CUE_SHARE = 0.6


def words(text: str) -> list[str]:
    """Lower-cased word tokens (punctuation dropped, "n't" kept as a token)."""
    text = text.lower().replace("n't", " n't")
    return re.findall(r"[a-z']+|n't", text)


def has_negation(text: str) -> bool:
    return any(w in NEGATION_WORDS for w in words(text))


def full_overlap(premise: str, hypothesis: str) -> bool:
    """Every hypothesis word occurs in the premise (the lexical-overlap heuristic fires)."""
    pw = set(words(premise))
    hw = words(hypothesis)
    return bool(hw) and all(w in pw for w in hw)


def heuristic_of(premise: str, hypothesis: str) -> str:
    """The cue a pair carries, for data without annotations (negation is checked first)."""
    if has_negation(hypothesis):
        return "negation"
    if full_overlap(premise, hypothesis):
        return "lexical_overlap"
    return "none"


def bias_aligned(heuristic: str, label: str) -> bool:
    """Does the cue predict the gold label? (``none``: nothing misleads → True)."""
    if heuristic in ("lexical_overlap", "subsequence", "constituent"):
        return label == "entailment"
    if heuristic == "negation":
        return label in ("contradiction", "non-entailment")
    return True


# ------------------------------------------------------------------------ sentence parts
@dataclass(frozen=True)
class NP:
    noun: str = ""
    name: str = ""
    adj: str = ""
    pp: str = ""  # "near the bank"
    rel: str = ""  # "who saw the lawyer"

    @property
    def head(self) -> str:
        return self.name or self.noun

    def text(self) -> str:
        core = self.name or "the " + (f"{self.adj} " if self.adj else "") + self.noun
        for extra in (self.pp, self.rel):
            if extra:
                core += " " + extra
        return core

    def bare(self) -> NP:
        return NP(noun=self.noun, name=self.name)


@dataclass(frozen=True)
class Clause:
    subj: NP
    verb: Verb | None = None  # None: copula with ``adj``
    obj: NP | None = None
    obj2: NP | None = None  # "S V O and O2"
    adj: str = ""
    adj2: str = ""  # "S was A and A2"
    adv: str = ""
    pp: str = ""

    def text(self, neg: str = "") -> str:
        """Render; ``neg`` in {"", "not", "never", "nobody", "no"} negates the main clause."""
        subj = self.subj.text()
        if neg == "nobody":
            subj = "nobody"
        elif neg == "no":
            subj = "no " + self.subj.noun
        if self.verb is None:
            pred = "was " + ("not " if neg == "not" else "never " if neg == "never" else "") + self.adj
            if self.adj2:
                pred += " and " + self.adj2
        elif neg == "not":
            pred = "did not " + self.verb.base
        elif neg == "never":
            pred = "never " + self.verb.past
        else:
            pred = self.verb.past
        out = f"{subj} {pred}"
        if self.obj is not None:
            out += " " + self.obj.text()
            if self.obj2 is not None:
                out += " and " + self.obj2.text()
        if self.adv:
            out += " " + self.adv
        if self.pp:
            out += " " + self.pp
        return out


def sentence(text: str) -> str:
    text = " ".join(text.split())
    return text[0].upper() + text[1:] + "."


class _Sampler:
    """All random choices of the generator, from one numpy Generator."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        #: the sub-kind the last recipe call built (recipes with several constructions set it)
        self.kind = ""

    def pick_kind(self, kinds):
        """:meth:`pick` that also records the choice as :attr:`kind` (same random draw)."""
        self.kind = self.pick(kinds)
        return self.kind

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def coin(self, p: float = 0.5) -> bool:
        return bool(self.rng.random() < p)

    def person(self, avoid: tuple[str, ...] = (), name_p: float = 0.25, noun_only: bool = False) -> NP:
        for _ in range(100):
            np_ = NP(name=self.pick(NAMES)) if not noun_only and self.coin(name_p) else NP(noun=self.pick(NOUNS))
            if np_.head not in avoid:
                return np_
        raise RuntimeError("could not draw a distinct person")  # pragma: no cover

    def place_pp(self) -> str:
        return f"{self.pick(PREPOSITIONS)} the {self.pick(PLACES)}"

    def person_pp(self, avoid: tuple[str, ...]) -> tuple[str, NP]:
        other = self.person(avoid)
        return f"{self.pick(PERSON_PREPOSITIONS)} {other.text()}", other

    def clause(self, avoid: tuple[str, ...] = (), transitive: bool | None = None, copula_p: float = 0.15,
               noun_subject: bool = False, noun_object: bool = False) -> Clause:
        subj = self.person(avoid, noun_only=noun_subject)
        avoid = (*avoid, subj.head)
        if transitive is None and self.coin(copula_p):
            return Clause(subj=subj, adj=self.pick(PRED_ADJECTIVES))
        if transitive is None:
            transitive = self.coin(0.6)
        if transitive:
            return Clause(subj=subj, verb=self.pick(TRANSITIVE), obj=self.person(avoid, noun_only=noun_object))
        return Clause(subj=subj, verb=self.pick(INTRANSITIVE))

    def heads(self, c: Clause) -> tuple[str, ...]:
        out = [c.subj.head]
        if c.obj is not None:
            out.append(c.obj.head)
        if c.obj2 is not None:
            out.append(c.obj2.head)
        return tuple(out)


Pair = tuple[str, str]
Recipe = Callable[[_Sampler], Pair]


# --------------------------------------------------------------- training recipes
def _with_noun_adj(s: _Sampler, c: Clause) -> Clause:
    if c.subj.name:
        c = replace(c, subj=s.person(s.heads(c), noun_only=True))
    return replace(c, subj=replace(c.subj, adj=s.pick(ADJECTIVES)))


def _e_drop_clause_material(s: _Sampler) -> Pair:
    """Entailed by dropping a whole clause or frame: conjunct, subordinate clause, factive verb,
    certainty adverb (the hypothesis is the remaining full clause)."""
    a, b = s.clause(), None
    kind = s.pick(("conjunct", "subordinate", "factive", "adverb"))
    s.kind = f"clause_{kind}"
    if kind in ("conjunct", "subordinate"):
        b = s.clause(s.heads(a))
    if kind == "conjunct":
        return sentence(f"{a.text()}, and {b.text()}"), sentence(s.pick((a, b)).text())
    if kind == "subordinate":
        return sentence(f"{s.pick(('because', 'since', 'after'))} {b.text()}, {a.text()}"), sentence(a.text())
    if kind == "factive":
        who = s.person(s.heads(a))
        return sentence(f"{who.text()} {s.pick(FACTIVE_VERBS)} that {a.text()}"), sentence(a.text())
    return sentence(f"{s.pick(CERTAIN_ADVERBS)} {a.text()}"), sentence(a.text())


def _e_drop_modifier(s: _Sampler) -> Pair:
    if s.coin(0.25):
        return _e_drop_clause_material(s)
    c = s.clause()
    kind = s.pick_kind(("subj_adj", "obj_adj", "pp", "adverb", "subj_pp", "relative", "conjunct", "adj2"))
    if kind == "subj_adj":
        p = _with_noun_adj(s, c)
    elif kind == "obj_adj" and c.obj is not None:
        p = replace(c, obj=replace(s.person(s.heads(c), noun_only=True), adj=s.pick(ADJECTIVES)))
        c = replace(c, obj=p.obj.bare())
    elif kind == "pp" and c.verb is not None:
        p = replace(c, pp=s.place_pp())
    elif kind == "adverb" and c.verb is not None:
        p = replace(c, adv=s.pick(MANNER_ADVERBS))
    elif kind == "subj_pp" and c.subj.noun:
        p = replace(c, subj=replace(c.subj, pp=s.place_pp()))
    elif kind == "relative" and c.subj.noun:
        rel = s.clause(s.heads(c), transitive=True)
        p = replace(c, subj=replace(c.subj, rel=f"who {rel.verb.past} {rel.obj.text()}"))
    elif kind == "conjunct" and c.obj is not None:
        p = replace(c, obj2=s.person(s.heads(c)))
        if s.coin():
            c = replace(c, obj=p.obj2)
    elif kind == "adj2" and c.verb is None:
        other = s.pick(tuple(a for a in PRED_ADJECTIVES if a != c.adj and (c.adj, a) not in ANTONYMS
                             and (a, c.adj) not in ANTONYMS))
        p = replace(c, adj2=other)
        if s.coin():
            c = replace(c, adj=other)
    else:
        s.kind = "pp" if c.verb is not None else "subj_adj"
        p = replace(c, pp=s.place_pp()) if c.verb is not None else _with_noun_adj(s, c)
        if c.verb is None:
            c = replace(c, subj=p.subj.bare())
        return sentence(p.text()), sentence(c.text())
    if kind == "subj_adj":
        c = replace(c, subj=p.subj.bare())
    return sentence(p.text()), sentence(c.text())


def _n_add_information(s: _Sampler) -> Pair:
    c = s.clause()
    kind = s.pick_kind(("pp", "adverb", "subj_adj", "other_verb", "other_object", "adj2", "new_clause"))
    if kind == "pp" and c.verb is not None:
        h = replace(c, pp=s.place_pp())
    elif kind == "adverb" and c.verb is not None:
        h = replace(c, adv=s.pick(MANNER_ADVERBS))
    elif kind == "other_verb" and c.obj is not None:
        h = replace(c, verb=s.pick(tuple(v for v in TRANSITIVE if v != c.verb)))
    elif kind == "other_object" and c.obj is not None:
        h = replace(c, obj=s.person(s.heads(c)))
    elif kind == "adj2" and c.verb is None:
        other = s.pick(tuple(a for a in PRED_ADJECTIVES if a != c.adj and (c.adj, a) not in ANTONYMS
                             and (a, c.adj) not in ANTONYMS))
        h = replace(c, adj2=other)
    elif kind == "new_clause":
        h = s.clause((c.subj.head,))
        h = replace(h, subj=c.subj) if s.coin() else h
    else:
        s.kind = "subj_adj"
        h = _with_noun_adj(s, c)
        c = replace(c, subj=h.subj.bare())
    return sentence(c.text()), sentence(h.text())


def _negation_form(s: _Sampler, c: Clause) -> str:
    forms = ["not", "never", "nobody"] + (["no"] if c.subj.noun else [])
    return s.pick(tuple(forms))


def _c_negated(s: _Sampler) -> Pair:
    c = s.clause()
    p = c
    extra = s.pick(("", "", "subj_adj", "pp", "adverb"))
    s.kind = "plain"
    if extra == "subj_adj":
        p = _with_noun_adj(s, c)
        c = replace(c, subj=p.subj.bare())
        s.kind = extra
    elif extra == "pp" and c.verb is not None:
        p = replace(c, pp=s.place_pp())
        s.kind = extra
    elif extra == "adverb" and c.verb is not None:
        p = replace(c, adv=s.pick(MANNER_ADVERBS))
        s.kind = extra
    return sentence(p.text()), sentence(c.text(_negation_form(s, c)))


UNCERTAIN_FRAMES = ("it is unclear whether", "it was unclear whether", "it remains uncertain whether",
                    "the question was whether", "it is still open whether")


def _n_overlap_not_entailed(s: _Sampler) -> Pair:
    # The swap is the challenge's ln_subject/object_swap (declared seen, reported apart); the
    # uncertainty frames are no challenge construction (no "believed that", "if", "or", PP or
    # relative clause on the subject).
    if s.coin():
        s.kind = "swap"
        c = s.clause(transitive=True)
        swapped = replace(c, subj=c.obj, obj=c.subj)
        return sentence(c.text()), sentence(swapped.text())
    s.kind = "uncertain_frame"
    c = s.clause()
    return sentence(f"{s.pick(UNCERTAIN_FRAMES)} {c.text()}"), sentence(c.text())


def _c_antonym_overlap(s: _Sampler) -> Pair:
    a, b = s.pick(ANTONYMS)
    if s.coin():
        a, b = b, a
    s1 = s.person()
    s2 = s.person((s1.head,))
    conj = s.pick((", and", ", but", ", while"))
    premise = f"{s1.text()} was {a}{conj} {s2.text()} was {b}"
    hyp = f"{s1.text()} was {b}" if s.coin() else f"{s2.text()} was {a}"
    return sentence(premise), sentence(hyp)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" or word == "honest" else "a"


def _predicate(c: Clause) -> str:
    """The clause without its subject ("sang loudly near the bank")."""
    return c.text()[len(c.subj.text()) + 1:]


def _e_generalize(s: _Sampler) -> Pair:
    """Entailed without full overlap: a hypernym ("someone", "a building"), a synonym verb, an
    existential paraphrase or a locative copula, often after dropping a modifier."""
    kind = s.pick_kind(("subj_hypernym", "subj_hypernym", "obj_hypernym", "synonym", "existential", "place",
                        "building"))
    if kind == "obj_hypernym":
        c = s.clause(transitive=True)
        return sentence(c.text()), sentence(replace(c, obj=NP(name=s.pick(SOMEONE))).text())
    if kind == "synonym":
        verb = s.pick(tuple(SYNONYMS))
        c = s.clause(transitive=any(v.base == verb for v in TRANSITIVE))
        c = replace(c, verb=next(v for v in (*TRANSITIVE, *INTRANSITIVE) if v.base == verb))
        p = replace(c, adv=s.pick(MANNER_ADVERBS)) if s.coin(0.3) else c
        h = replace(c, verb=Verb(SYNONYMS[verb], SYNONYMS[verb], SYNONYMS[verb]))
        return sentence(p.text()), sentence(h.text())
    if kind in ("place", "building"):
        c = replace(s.clause(transitive=s.coin(0.3), copula_p=0.0), pp="")
        prep, place = s.pick(PREPOSITIONS), s.pick(BUILDINGS)
        p = replace(c, pp=f"{prep} the {place}")
        if kind == "place":
            return sentence(p.text()), sentence(f"{c.subj.text()} was {prep} the {place}")
        return sentence(p.text()), sentence(replace(c, pp=f"{prep} a building").text())
    c = s.clause(noun_subject=kind == "existential", copula_p=0.2)
    p = c
    if c.verb is not None and s.coin(0.4):  # a modifier the hypothesis drops as well
        p = replace(c, adv=s.pick(MANNER_ADVERBS)) if s.coin() else replace(c, pp=s.place_pp())
    if kind == "existential":
        return sentence(p.text()), sentence(f"there was {_article(c.subj.noun)} {c.subj.noun} who {_predicate(c)}")
    return sentence(p.text()), sentence(replace(c, subj=NP(name=s.pick(SOMEONE))).text())


def _e_negated_entailed(s: _Sampler) -> Pair:
    kind = s.pick_kind(("conjunct", "nobody", "factive", "subj_adj", "downward"))
    c = s.clause()
    if kind == "conjunct":
        neg = _negation_form(s, c)
        other = s.clause(s.heads(c))
        first = s.coin()
        joined = (f"{c.text(neg)}, and {other.text()}" if first else f"{other.text()}, but {c.text(neg)}")
        return sentence(joined), sentence(c.text(neg))
    if kind == "nobody":
        neg = s.pick(("not", "never"))
        return sentence(c.text("nobody")), sentence(c.text(neg))
    if kind == "factive":
        knower = s.person(s.heads(c))
        neg = _negation_form(s, c)
        return sentence(f"{knower.text()} {s.pick(FACTIVE_VERBS)} that {c.text(neg)}"), sentence(c.text(neg))
    if kind == "downward":  # negation licenses adding a modifier: "did not sing" → "did not sing loudly"
        c = s.clause(transitive=s.coin(0.4), copula_p=0.0)
        h = replace(c, adv=s.pick(MANNER_ADVERBS)) if s.coin() else replace(c, pp=s.place_pp())
        neg = s.pick(("not", "never", "nobody"))
        return sentence(c.text(neg)), sentence(h.text(neg))
    p = _with_noun_adj(s, c)
    neg = s.pick(("not", "never"))
    return sentence(p.text(neg)), sentence(replace(c, subj=p.subj.bare()).text(neg))


def _n_unsupported(s: _Sampler) -> Pair:
    """Neutral without a cue: added information, another subject/object/activity, an unrelated
    trait, or a specific claim from a general premise (the reverse of :func:`_e_generalize`)."""
    kind = s.pick_kind(("add", "add", "other_subject", "other_activity", "trait", "specific", "specific_place"))
    if kind == "add":
        return _n_add_information(s)
    if kind == "other_subject":
        c = s.clause(copula_p=0.0)
        p = replace(c, adv=s.pick(MANNER_ADVERBS)) if s.coin(0.3) else c
        return sentence(p.text()), sentence(replace(c, subj=s.person(s.heads(c))).text())
    if kind == "other_activity":
        a, b = s.rng.choice(len(COMPATIBLE_ACTIVITIES), size=2, replace=False)
        verb = {v.base: v for v in INTRANSITIVE}
        c = s.clause(transitive=False)
        pp = s.place_pp() if s.coin(0.4) else ""
        p = replace(c, verb=verb[COMPATIBLE_ACTIVITIES[int(a)]], pp=pp)
        return sentence(p.text()), sentence(replace(p, verb=verb[COMPATIBLE_ACTIVITIES[int(b)]]).text())
    if kind == "trait":
        c = s.clause(copula_p=0.0)
        p = replace(c, pp=s.place_pp()) if s.coin(0.4) else c
        if c.subj.name and s.coin():
            return sentence(p.text()), sentence(f"{c.subj.name} was {_article(noun := s.pick(NOUNS))} {noun}")
        return sentence(p.text()), sentence(f"{c.subj.text()} was {s.pick(TRAITS)}")
    if kind == "specific_place":
        c = replace(s.clause(copula_p=0.0), pp="")
        prep, place = s.pick(PREPOSITIONS), s.pick(BUILDINGS)
        return (sentence(replace(c, pp=f"{prep} a building").text()),
                sentence(replace(c, pp=f"{prep} the {place}").text()))
    c = s.clause(noun_subject=True, copula_p=0.2)
    return sentence(replace(c, subj=NP(name=s.pick(SOMEONE))).text()), sentence(c.text())


def _n_negated_unrelated(s: _Sampler) -> Pair:
    """Neutral with a negated hypothesis: a negated premise about someone or something else."""
    c = s.clause()
    neg_p, neg_h = s.pick(("not", "never")), s.pick(("not", "never"))
    kind = s.pick_kind(("other_subject", "other_object", "unrelated"))
    if kind == "other_subject" or (kind == "other_object" and c.obj is None):
        s.kind = "other_subject"
        h = replace(c, subj=s.person(s.heads(c)))
    elif kind == "other_object":
        h = replace(c, obj=s.person(s.heads(c)))
    else:
        h = s.clause(s.heads(c))
    return sentence(c.text(neg_p)), sentence(h.text(neg_h))


def _c_incompatible(s: _Sampler) -> Pair:
    """Contradiction without negation or full overlap: an antonym adjective or adverb, an
    incompatible activity or state, an opposite location."""
    kind = s.pick_kind(("adjective", "adverb", "activity", "state", "location"))
    if kind == "adjective":
        a, b = s.pick(ANTONYMS)
        a, b = (b, a) if s.coin() else (a, b)
        c = Clause(subj=s.person(), adj=a)
        h = replace(c, adj=b)
        if s.coin(0.3):
            h = replace(h, adj2=s.pick(tuple(x for x in TRAITS if x not in (a, b))))
        return sentence(c.text()), sentence(h.text())
    if kind == "adverb":
        a, b = s.pick(ADVERB_ANTONYMS)
        a, b = (b, a) if s.coin() else (a, b)
        c = s.clause(copula_p=0.0)
        c = replace(c, pp=s.place_pp()) if s.coin(0.3) else c
        return sentence(replace(c, adv=a).text()), sentence(replace(c, adv=b).text())
    if kind == "activity":  # "The man slept in the park." vs "The man ran in the park."
        verb = {v.base: v for v in INTRANSITIVE}
        a, b = "sleep", s.pick(AWAKE_ACTIVITIES)
        a, b = (b, a) if s.coin() else (a, b)
        c = replace(s.clause(transitive=False), verb=verb[a], pp=s.place_pp() if s.coin() else "")
        return sentence(c.text()), sentence(replace(c, verb=verb[b]).text())
    if kind == "state":
        base, state = s.pick(INCOMPATIBLE_STATES)
        c = replace(s.clause(transitive=False), verb=next(v for v in INTRANSITIVE if v.base == base))
        p = replace(c, pp=s.place_pp()) if s.coin(0.4) else c
        return sentence(p.text()), sentence(f"{c.subj.text()} {state}")
    a, b = s.pick(LOCATION_ANTONYMS)
    a, b = (b, a) if s.coin() else (a, b)
    who, place = s.person(), s.pick(PLACES)
    return sentence(f"{who.text()} was {a} the {place}"), sentence(f"{who.text()} was {b} the {place}")


#: (label, heuristic) → (template name, recipe); the heuristic is what :func:`heuristic_of` finds
TRAIN_RECIPES: dict[tuple[str, str], tuple[str, Recipe]] = {
    ("entailment", "lexical_overlap"): ("drop_modifier", _e_drop_modifier),
    ("entailment", "negation"): ("negated_entailed", _e_negated_entailed),
    ("entailment", "none"): ("generalize", _e_generalize),
    ("neutral", "lexical_overlap"): ("overlap_not_entailed", _n_overlap_not_entailed),
    ("neutral", "negation"): ("negated_unrelated", _n_negated_unrelated),
    ("neutral", "none"): ("unsupported", _n_unsupported),
    ("contradiction", "negation"): ("negated_clause", _c_negated),
    ("contradiction", "lexical_overlap"): ("antonym_overlap", _c_antonym_overlap),
    ("contradiction", "none"): ("incompatible", _c_incompatible),
}


# -------------------------------------------------------------- challenge subcases
def _ln_swap(s: _Sampler) -> Pair:
    c = s.clause(transitive=True)
    return sentence(c.text()), sentence(replace(c, subj=c.obj, obj=c.subj).text())


def _ln_passive(s: _Sampler) -> Pair:
    c = replace(s.clause(transitive=True), verb=s.pick(PASSIVE_VERBS))
    return (sentence(f"{c.subj.text()} was {c.verb.participle} by {c.obj.text()}"), sentence(c.text()))


def _ln_preposition(s: _Sampler) -> Pair:
    c = s.clause(transitive=True, noun_subject=True)
    pp, other = s.person_pp(s.heads(c))
    p = replace(c, subj=replace(c.subj, pp=pp))
    return sentence(p.text()), sentence(replace(c, subj=other).text())


def _ln_relative_clause(s: _Sampler) -> Pair:
    c = s.clause(transitive=True, noun_subject=True)
    other = s.person(s.heads(c))
    rel_verb = s.pick(TRANSITIVE)
    p = replace(c, subj=replace(c.subj, rel=f"who {other.text()} {rel_verb.past}"))
    return sentence(p.text()), sentence(replace(c, subj=other).text())


def _ln_conjunction(s: _Sampler) -> Pair:
    c = s.clause(transitive=True)
    other = s.person(s.heads(c))
    premise = f"{c.subj.text()} and {other.text()} {c.verb.past} {c.obj.text()}"
    return sentence(premise), sentence(replace(c, subj=other, obj=c.subj).text())


def _le_relative_clause(s: _Sampler) -> Pair:
    c = s.clause(transitive=True, noun_subject=True)
    other = s.person(s.heads(c))
    rel_verb = s.pick(TRANSITIVE)
    p = replace(c, subj=replace(c.subj, rel=f"who {rel_verb.past} {other.text()}"))
    return sentence(p.text()), sentence(c.text())


def _le_around_pp(s: _Sampler) -> Pair:
    c = s.clause(transitive=True, noun_subject=True)
    pp, _ = s.person_pp(s.heads(c))
    return sentence(replace(c, subj=replace(c.subj, pp=pp)).text()), sentence(c.text())


def _le_conjunction(s: _Sampler) -> Pair:
    c = s.clause(transitive=True)
    other = s.person(s.heads(c))
    premise = f"{c.subj.text()} and {other.text()} {c.verb.past} {c.obj.text()}"
    return sentence(premise), sentence(replace(c, subj=other).text())


def _le_passive(s: _Sampler) -> Pair:
    c = replace(s.clause(transitive=True), verb=s.pick(PASSIVE_VERBS))
    return sentence(f"{c.obj.text()} was {c.verb.participle} by {c.subj.text()}"), sentence(c.text())


def _le_relative_clause_object(s: _Sampler) -> Pair:
    c = s.clause(transitive=True, noun_object=True)
    rel = s.pick(INTRANSITIVE)
    return sentence(replace(c, obj=replace(c.obj, rel=f"who {rel.past}")).text()), sentence(c.text())


def _sn_np_s(s: _Sampler) -> Pair:
    knower = s.person()
    c = s.clause((knower.head,), transitive=True)
    verb = s.pick(NP_S_VERBS)
    return (sentence(f"{knower.text()} {verb} {c.text()}"), sentence(f"{knower.text()} {verb} {c.subj.text()}"))


def _sn_pp_on_subject(s: _Sampler) -> Pair:
    c = s.clause(transitive=False, noun_subject=True)
    pp, other = s.person_pp(s.heads(c))
    return sentence(replace(c, subj=replace(c.subj, pp=pp)).text()), sentence(replace(c, subj=other).text())


def _sn_relative_clause_on_subject(s: _Sampler) -> Pair:
    c = s.clause(transitive=False, noun_subject=True)
    other = s.person(s.heads(c))
    rel_verb = s.pick(TRANSITIVE)
    p = replace(c, subj=replace(c.subj, rel=f"who {rel_verb.past} {other.text()}"))
    return sentence(p.text()), sentence(replace(c, subj=other).text())


def _sn_past_participle(s: _Sampler) -> Pair:
    c = s.clause(transitive=False, noun_subject=True)
    verb = s.pick(PASSIVE_VERBS)
    other = s.person(s.heads(c))
    # reduced relative "The doctor paid by the lawyer slept." → garden-path reading "The doctor paid."
    premise = f"{c.subj.text()} {verb.participle} by {other.text()} {c.verb.past}"
    return sentence(premise), sentence(f"{c.subj.text()} {verb.past}")


def _sn_conjunction_subject(s: _Sampler) -> Pair:
    # "The doctor saw the lawyer and the artist slept" (no comma) → "The lawyer and the artist slept"
    c = s.clause(transitive=True)
    other = s.clause(s.heads(c), transitive=False)
    premise = f"{c.text()} and {other.text()}"
    return sentence(premise), sentence(f"{c.obj.text()} and {other.text()}")


def _se_pp_on_obj(s: _Sampler) -> Pair:
    c = s.clause(transitive=True, noun_object=True)
    pp, _ = s.person_pp(s.heads(c))
    return sentence(replace(c, obj=replace(c.obj, pp=pp)).text()), sentence(c.text())


def _se_adjective(s: _Sampler) -> Pair:
    c = s.clause(transitive=True)
    obj = replace(s.person(s.heads(c), noun_only=True), adj=s.pick(ADJECTIVES))
    return sentence(replace(c, obj=obj).text()), sentence(f"{c.subj.text()} {c.verb.past} the {obj.noun}")


def _se_conjunction(s: _Sampler) -> Pair:
    c = s.clause(transitive=True)
    return sentence(replace(c, obj2=s.person(s.heads(c))).text()), sentence(c.text())


def _se_relative_clause_on_obj(s: _Sampler) -> Pair:
    c = s.clause(transitive=True, noun_object=True)
    rel = s.clause(s.heads(c), transitive=True)
    p = replace(c, obj=replace(c.obj, rel=f"who {rel.verb.past} {rel.obj.text()}"))
    return sentence(p.text()), sentence(c.text())


def _se_pp_on_vp(s: _Sampler) -> Pair:
    c = s.clause(transitive=False)
    return sentence(replace(c, pp=s.place_pp()).text()), sentence(c.text())


def _two_clauses(s: _Sampler) -> tuple[Clause, Clause]:
    a = s.clause(transitive=False) if s.coin() else s.clause(transitive=True)
    b = s.clause(s.heads(a), transitive=False) if s.coin() else s.clause(s.heads(a), transitive=True)
    return a, b


def _cn_embedded_under_if(s: _Sampler) -> Pair:
    a, b = _two_clauses(s)
    conj = s.pick(("if", "unless"))
    return sentence(f"{conj} {a.text()}, {b.text()}"), sentence(a.text())


def _cn_after_if_clause(s: _Sampler) -> Pair:
    a, b = _two_clauses(s)
    conj = s.pick(("if", "unless"))
    return sentence(f"{conj} {a.text()}, {b.text()}"), sentence(b.text())


def _cn_disjunction(s: _Sampler) -> Pair:
    a, b = _two_clauses(s)
    return sentence(f"{a.text()}, or {b.text()}"), sentence(b.text() if s.coin() else a.text())


def _cn_embedded_under_verb(s: _Sampler) -> Pair:
    c = s.clause()
    who = s.person(s.heads(c))
    return sentence(f"{who.text()} {s.pick(NONFACTIVE_VERBS)} that {c.text()}"), sentence(c.text())


def _cn_adverb(s: _Sampler) -> Pair:
    c = s.clause()
    return sentence(f"{s.pick(UNCERTAIN_ADVERBS)} {c.text()}"), sentence(c.text())


def _ce_embedded_under_since(s: _Sampler) -> Pair:
    a, b = _two_clauses(s)
    conj = s.pick(("since", "because", "although"))
    return sentence(f"{conj} {a.text()}, {b.text()}"), sentence(a.text())


def _ce_after_since_clause(s: _Sampler) -> Pair:
    a, b = _two_clauses(s)
    conj = s.pick(("since", "because", "although"))
    return sentence(f"{conj} {a.text()}, {b.text()}"), sentence(b.text())


def _ce_embedded_under_verb(s: _Sampler) -> Pair:
    c = s.clause()
    who = s.person(s.heads(c))
    return sentence(f"{who.text()} {s.pick(FACTIVE_VERBS)} that {c.text()}"), sentence(c.text())


def _ce_adverb(s: _Sampler) -> Pair:
    c = s.clause()
    return sentence(f"{s.pick(CERTAIN_ADVERBS)} {c.text()}"), sentence(c.text())


def _ce_conjunction(s: _Sampler) -> Pair:
    a, b = _two_clauses(s)
    return sentence(f"{a.text()}, and {b.text()}"), sentence(b.text() if s.coin() else a.text())


def _ce_before_so_clause(s: _Sampler) -> Pair:
    # "A, so B." asserts A (and that B followed from it): the first clause is entailed
    a, b = _two_clauses(s)
    return sentence(f"{a.text()}, so {b.text()}"), sentence(a.text())


# negation group: ne_* entailed despite the cue, nn_* not entailed (cue right)
def _ne_conjunct(s: _Sampler) -> Pair:
    a, b = _two_clauses(s)
    neg = _negation_form(s, a)
    return sentence(f"{b.text()}, but {a.text(neg)}"), sentence(a.text(neg))


def _ne_nobody(s: _Sampler) -> Pair:
    c = s.clause(noun_subject=s.coin())
    if c.subj.noun and s.coin():
        return sentence(c.text("no")), sentence(c.text(s.pick(("not", "never"))))
    return sentence(c.text("nobody")), sentence(c.text(s.pick(("not", "never"))))


def _ne_factive(s: _Sampler) -> Pair:
    c = s.clause()
    who = s.person(s.heads(c))
    neg = s.pick(("not", "never"))
    return sentence(f"{who.text()} {s.pick(FACTIVE_VERBS)} that {c.text(neg)}"), sentence(c.text(neg))


def _ne_subject_adjective(s: _Sampler) -> Pair:
    c = s.clause()
    p = _with_noun_adj(s, c)
    neg = s.pick(("not", "never"))
    return sentence(p.text(neg)), sentence(replace(c, subj=p.subj.bare()).text(neg))


def _nn_negated_clause(s: _Sampler) -> Pair:
    c = s.clause()
    return sentence(c.text()), sentence(c.text(s.pick(("not", "never"))))


def _nn_nobody(s: _Sampler) -> Pair:
    c = s.clause(noun_subject=True)
    return sentence(c.text()), sentence(c.text(s.pick(("nobody", "no"))))


def _nn_unrelated(s: _Sampler) -> Pair:
    c = s.clause()
    other = s.clause(s.heads(c))
    return sentence(c.text()), sentence(other.text(_negation_form(s, other)))


def _nn_negated_under_nonfactive(s: _Sampler) -> Pair:
    c = s.clause()
    who = s.person(s.heads(c))
    neg = s.pick(("not", "never"))
    return sentence(f"{who.text()} {s.pick(NONFACTIVE_VERBS)} that {c.text(neg)}"), sentence(c.text(neg))


def _ne_negated_under_since(s: _Sampler) -> Pair:
    # a "since"/"because" clause is asserted, so its negated content is entailed
    a, b = _two_clauses(s)
    neg = _negation_form(s, a)
    conj = s.pick(("since", "because"))
    return sentence(f"{conj} {a.text(neg)}, {b.text()}"), sentence(a.text(neg))


def _ne_passive_negated(s: _Sampler) -> Pair:
    # "The lawyer was not helped by the doctor." → "The doctor did not help the lawyer."
    c = replace(s.clause(transitive=True), verb=s.pick(PASSIVE_VERBS))
    neg = s.pick(("not", "never"))
    return (sentence(f"{c.obj.text()} was {neg} {c.verb.participle} by {c.subj.text()}"),
            sentence(c.text(neg)))


def _ne_relative_clause_negated(s: _Sampler) -> Pair:
    # "The doctor who met the artist did not call the lawyer." → "The doctor did not call the lawyer."
    c = s.clause(noun_subject=True)
    rel = s.clause(s.heads(c), transitive=True)
    p = replace(c, subj=replace(c.subj, rel=f"who {rel.verb.past} {rel.obj.text()}"))
    neg = s.pick(("not", "never"))
    return sentence(p.text(neg)), sentence(c.text(neg))


def _nn_negated_under_if(s: _Sampler) -> Pair:
    # a conditional's antecedent is not asserted: "If A did not V B, C V-ed." ⇏ "A did not V B."
    a, b = _two_clauses(s)
    neg = _negation_form(s, a)
    return sentence(f"if {a.text(neg)}, {b.text()}"), sentence(a.text(neg))


def _nn_passive_negated(s: _Sampler) -> Pair:
    # "The lawyer was helped by the doctor." contradicts "The doctor did not help the lawyer."
    c = replace(s.clause(transitive=True), verb=s.pick(PASSIVE_VERBS))
    return (sentence(f"{c.obj.text()} was {c.verb.participle} by {c.subj.text()}"),
            sentence(c.text(s.pick(("not", "never")))))


#: heuristic → [(subcase, gold label, recipe)]
CHALLENGE_SUBCASES: dict[str, tuple[tuple[str, str, Recipe], ...]] = {
    "lexical_overlap": (
        ("ln_subject/object_swap", "non-entailment", _ln_swap),
        ("ln_passive", "non-entailment", _ln_passive),
        ("ln_preposition", "non-entailment", _ln_preposition),
        ("ln_relative_clause", "non-entailment", _ln_relative_clause),
        ("ln_conjunction", "non-entailment", _ln_conjunction),
        ("le_relative_clause", "entailment", _le_relative_clause),
        ("le_around_prepositional_phrase", "entailment", _le_around_pp),
        ("le_conjunction", "entailment", _le_conjunction),
        ("le_passive", "entailment", _le_passive),
        ("le_around_relative_clause", "entailment", _le_relative_clause_object),
    ),
    "subsequence": (
        ("sn_NP/S", "non-entailment", _sn_np_s),
        ("sn_PP_on_subject", "non-entailment", _sn_pp_on_subject),
        ("sn_relative_clause_on_subject", "non-entailment", _sn_relative_clause_on_subject),
        ("sn_past_participle", "non-entailment", _sn_past_participle),
        ("sn_NP_conjunction", "non-entailment", _sn_conjunction_subject),
        ("se_PP_on_obj", "entailment", _se_pp_on_obj),
        ("se_adjective", "entailment", _se_adjective),
        ("se_conjunction", "entailment", _se_conjunction),
        ("se_relative_clause_on_obj", "entailment", _se_relative_clause_on_obj),
        ("se_PP_on_VP", "entailment", _se_pp_on_vp),
    ),
    "constituent": (
        ("cn_embedded_under_if", "non-entailment", _cn_embedded_under_if),
        ("cn_after_if_clause", "non-entailment", _cn_after_if_clause),
        ("cn_disjunction", "non-entailment", _cn_disjunction),
        ("cn_embedded_under_verb", "non-entailment", _cn_embedded_under_verb),
        ("cn_adverb", "non-entailment", _cn_adverb),
        ("ce_embedded_under_since", "entailment", _ce_embedded_under_since),
        ("ce_after_since_clause", "entailment", _ce_after_since_clause),
        ("ce_embedded_under_verb", "entailment", _ce_embedded_under_verb),
        ("ce_adverb", "entailment", _ce_adverb),
        ("ce_conjunction", "entailment", _ce_conjunction),
        ("ce_before_so_clause", "entailment", _ce_before_so_clause),
    ),
    "negation": (
        ("ne_negated_conjunct", "entailment", _ne_conjunct),
        ("ne_nobody_instantiated", "entailment", _ne_nobody),
        ("ne_factive_complement", "entailment", _ne_factive),
        ("ne_subject_adjective", "entailment", _ne_subject_adjective),
        ("ne_negated_under_since", "entailment", _ne_negated_under_since),
        ("ne_passive", "entailment", _ne_passive_negated),
        ("ne_relative_clause", "entailment", _ne_relative_clause_negated),
        ("nn_negated_clause", "non-entailment", _nn_negated_clause),
        ("nn_nobody", "non-entailment", _nn_nobody),
        ("nn_unrelated_negation", "non-entailment", _nn_unrelated),
        ("nn_negated_under_nonfactive", "non-entailment", _nn_negated_under_nonfactive),
        ("nn_negated_under_if", "non-entailment", _nn_negated_under_if),
        ("nn_passive", "non-entailment", _nn_passive_negated),
    ),
}

CHALLENGE_DEV, CHALLENGE_TEST = "challenge_dev", "challenge"
#: the challenge splits of the embedded benchmark: ``challenge_dev`` (choosing recipes, early
#: stopping) and ``challenge`` (reporting); disjoint in constructions
CHALLENGE_SPLITS: tuple[str, ...] = (CHALLENGE_TEST, CHALLENGE_DEV)


@dataclass(frozen=True)
class SubcaseDesign:
    """Where a challenge subcase stands: ``seen`` when training or augmentation builds pairs of
    the same shape (``seen_via`` names them), else held out from both; ``split`` is the
    challenge split it belongs to."""

    seen: bool
    split: str
    seen_via: tuple[str, ...] = ()


def _seen(*via: str) -> SubcaseDesign:
    return SubcaseDesign(True, CHALLENGE_TEST, via)


_DEV, _TEST = SubcaseDesign(False, CHALLENGE_DEV), SubcaseDesign(False, CHALLENGE_TEST)

#: subcase → its design. Seen subcases all stay in the reporting split (reported apart);
#: held-out ones are divided so that every (heuristic, gold label) has at least one held-out
#: subcase in each challenge split, mirrored pairs (ln_/le_passive, …) staying together.
#: ``seen_via`` lists the training sub-kinds (``template/kind``) and augmentation recipes
#: that share the subcase's normalised signature (:mod:`debiaskd.data.constructions`); a test
#: checks every entry against the measured overlap.
CHALLENGE_DESIGN: dict[str, SubcaseDesign] = {
    "ln_subject/object_swap": _seen("overlap_not_entailed/swap", "role_swap"),
    "ln_passive": _DEV, "ln_conjunction": _DEV,
    "ln_preposition": _TEST, "ln_relative_clause": _TEST,
    "le_relative_clause": _seen("drop_modifier/relative"),
    "le_passive": _DEV, "le_conjunction": _DEV,
    "le_around_prepositional_phrase": _TEST, "le_around_relative_clause": _TEST,
    "sn_PP_on_subject": _DEV, "sn_NP_conjunction": _DEV,
    "sn_NP/S": _TEST, "sn_relative_clause_on_subject": _TEST, "sn_past_participle": _TEST,
    "se_adjective": _seen("drop_modifier/obj_adj"),
    "se_conjunction": _seen("drop_modifier/conjunct"),
    "se_PP_on_VP": _seen("drop_modifier/pp"),
    "se_PP_on_obj": _DEV, "se_relative_clause_on_obj": _TEST,
    "cn_embedded_under_verb": _seen("embedded_claim"),
    "cn_disjunction": _DEV, "cn_adverb": _DEV,
    "cn_embedded_under_if": _TEST, "cn_after_if_clause": _TEST,
    "ce_after_since_clause": _seen("drop_modifier/clause_subordinate"),
    "ce_embedded_under_verb": _seen("drop_modifier/clause_factive"),
    "ce_adverb": _seen("drop_modifier/clause_adverb"),
    "ce_conjunction": _seen("drop_modifier/clause_conjunct"),
    "ce_before_so_clause": _DEV, "ce_embedded_under_since": _TEST,
    "ne_negated_conjunct": _seen("negated_entailed/conjunct"),
    "ne_nobody_instantiated": _seen("negated_entailed/nobody"),
    "ne_factive_complement": _seen("negated_entailed/factive", "factive_negated"),
    "ne_subject_adjective": _seen("negated_entailed/subj_adj"),
    "ne_passive": _DEV,
    "ne_negated_under_since": _TEST, "ne_relative_clause": _TEST,
    "nn_negated_clause": _seen("negated_clause/plain"),
    "nn_nobody": _seen("negated_clause/plain"),
    "nn_unrelated_negation": _seen("negated_clause/plain"),  # "A slept." → "Nobody slept."
    "nn_passive": _DEV, "nn_negated_under_nonfactive": _DEV,
    "nn_negated_under_if": _TEST,
}


def subcase_table() -> list[dict]:
    """One row per challenge subcase: heuristic, subcase, label, recipe, seen, split."""
    return [{"heuristic": h, "subcase": sub, "label": label, "recipe": recipe.__name__.lstrip("_"),
             "seen": CHALLENGE_DESIGN[sub].seen, "split": CHALLENGE_DESIGN[sub].split}
            for h, subcases in CHALLENGE_SUBCASES.items() for sub, label, recipe in subcases]


# ---------------------------------------------------------------------- assembly
def _draw(s: _Sampler, recipe: Recipe, seen: set[Pair], heuristic: str | None = None) -> Pair:
    """A new pair of ``recipe`` (and, when given, one that carries exactly the cue ``heuristic``);
    ``s.kind`` is then the sub-kind the recipe built ("" for single-construction recipes)."""
    for _ in range(200):
        s.kind = ""
        pair = recipe(s)
        if pair in seen or pair[0] == pair[1]:
            continue
        if max(len(pair[0].split()), len(pair[1].split())) > MAX_WORDS:
            continue
        if heuristic is not None and heuristic_of(*pair) != heuristic:
            continue
        seen.add(pair)
        return pair
    raise RuntimeError(f"generator recipe {recipe.__name__} cannot produce new pairs")  # pragma: no cover


def _row(pid: str, pair: Pair, label: str, heuristic: str, subcase: str, template: str,
         construction: str, seen: bool | None = None) -> dict:
    row = {
        "pair_id": pid, "premise": pair[0], "hypothesis": pair[1], "label": label,
        "heuristic": heuristic, "subcase": subcase, "template": template,
        "bias_aligned": bias_aligned(heuristic, label), "group": nli_group(heuristic, label),
        "construction": construction,
    }
    if seen is not None:
        row["construction_seen"] = seen
    return row


def _frame(rows: list[dict], challenge: bool = False) -> pd.DataFrame:
    cols = (*NLI_COLUMNS, *(CONSTRUCTION_COLUMNS if challenge else CONSTRUCTION_COLUMNS[:1]))
    df = pd.DataFrame(rows, columns=list(cols))
    df["bias_aligned"] = df["bias_aligned"].astype(bool)
    if challenge:
        df["construction_seen"] = df["construction_seen"].astype(bool)
    return df


def train_plan(n: int, bias_strength: float) -> list[tuple[str, str]]:
    """``n`` (label, heuristic) slots: labels balanced; each cue gets ``CUE_SHARE`` of a label's
    count, of which ``bias_strength`` is aligned (overlap → entailment, negation → contradiction)
    and the rest split between the two other labels; all remaining slots carry no cue."""
    per_label = {label: n // 3 + (1 if k < n % 3 else 0) for k, label in enumerate(NLI_LABELS)}
    n_cue = round(CUE_SHARE * n / 3)
    counts: dict[tuple[str, str], int] = {}
    for cue, aligned, anti in (("lexical_overlap", "entailment", ("neutral", "contradiction")),
                               ("negation", "contradiction", ("entailment", "neutral"))):
        n_aligned = round(bias_strength * n_cue)
        counts[(aligned, cue)] = n_aligned
        counts[(anti[0], cue)] = (n_cue - n_aligned + 1) // 2
        counts[(anti[1], cue)] = (n_cue - n_aligned) // 2
    plan: list[tuple[str, str]] = []
    for label in NLI_LABELS:
        cued = [(label, cue) for cue in ("lexical_overlap", "negation")]
        n_none = per_label[label] - sum(counts[k] for k in cued)
        for key in cued:
            plan += [key] * counts[key]
        plan += [(label, "none")] * max(n_none, 0)
    return plan


def generate_train_like(n: int, bias_strength: float, s: _Sampler, seen: set[Pair], prefix: str) -> pd.DataFrame:
    """``n`` pairs of the training distribution (see :func:`train_plan`), in random order."""
    plan = train_plan(n, bias_strength)
    order = s.rng.permutation(len(plan))
    rows = []
    for i, j in enumerate(order):
        label, heuristic = plan[int(j)]
        template, recipe = TRAIN_RECIPES[(label, heuristic)]
        pair = _draw(s, recipe, seen, heuristic)
        construction = f"{template}/{s.kind}" if s.kind else template
        rows.append(_row(f"{prefix}-{i:05d}", pair, label, heuristic, "", template, construction))
    return _frame(rows)


def generate_challenges(n_per_subcase: int, s: _Sampler, seen: set[Pair]) -> dict[str, pd.DataFrame]:
    """``challenge`` and ``challenge_dev`` (:data:`CHALLENGE_DESIGN`): ``n_per_subcase`` pairs of
    every subcase, drawn in the order of :data:`CHALLENGE_SUBCASES`, each in its split."""
    rows: dict[str, list[dict]] = {name: [] for name in CHALLENGE_SPLITS}
    for heuristic, subcases in CHALLENGE_SUBCASES.items():
        for subcase, label, recipe in subcases:
            design = CHALLENGE_DESIGN[subcase]
            out = rows[design.split]
            for _ in range(n_per_subcase):
                pair = _draw(s, recipe, seen)
                out.append(_row(f"{design.split}-{len(out):05d}", pair, label, heuristic, subcase,
                                recipe.__name__.lstrip("_"), subcase, design.seen))
    return {name: _frame(r, challenge=True) for name, r in rows.items()}


def generate_challenge(n_per_subcase: int, s: _Sampler, seen: set[Pair]) -> pd.DataFrame:
    """Both challenge splits in one frame (reporting split first)."""
    parts = generate_challenges(n_per_subcase, s, seen)
    return pd.concat([parts[name] for name in CHALLENGE_SPLITS], ignore_index=True)


def generate_nli(cfg: NLIDataConfig) -> dict[str, pd.DataFrame]:
    """The five splits (train, validation, test, challenge, challenge_dev), deterministic from ``cfg.seed``."""
    s = _Sampler(np.random.default_rng(np.random.PCG64(cfg.seed)))
    seen: set[Pair] = set()
    out = {
        "train": generate_train_like(cfg.n_train, cfg.bias_strength, s, seen, "train"),
        "validation": generate_train_like(cfg.n_validation, cfg.bias_strength, s, seen, "validation"),
        "test": generate_train_like(cfg.n_test, cfg.bias_strength, s, seen, "test"),
    }
    out.update(generate_challenges(cfg.n_challenge_per_subcase, s, seen))
    return out
