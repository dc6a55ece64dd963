"""NLI: premise/hypothesis pairs with HANS-style shortcuts (lexical overlap, subsequence,
constituent, negation); BERT/MiniLM teachers and shallower students."""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from debiaskd.core.config import NLIDataConfig, StudyConfig, ValidationConfig
from debiaskd.core.errors import DebiaskdError
from debiaskd.core.metrics import is_two_way
from debiaskd.core.task import Loader, Task
from debiaskd.data.augment import augment_nli
from debiaskd.data.checks import as_text, group_and_id_rules, is_type
from debiaskd.data.encoding import frame_to_hans_tsv, frame_to_jsonl
from debiaskd.data.generate_nli import generate_nli, subcase_table
from debiaskd.data.schema import (
    BIAS_TYPES,
    HANS_HEURISTICS,
    NLI_COLUMNS,
    NLI_LABELS,
    NO_HEURISTIC,
    TWO_WAY_LABELS,
    nli_group,
)
from debiaskd.training.bias import add_bias_probs, fit_bias_model

#: splits also written in the HANS tab-separated layout
HANS_LAYOUT_SPLITS: tuple[str, ...] = ("challenge", "challenge_dev")


@functools.lru_cache(maxsize=4)
def generated_from_json(cfg_json: str) -> dict[str, pd.DataFrame]:
    """The embedded benchmark of an ``nli_data`` section (as JSON: the cache key)."""
    return generate_nli(NLIDataConfig.model_validate_json(cfg_json))


def deduplicate(splits: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], int]:
    """Drop from train the pairs that also occur in an evaluation split; namespace clashing ids."""
    train = splits["train"]
    evals = [n for n in splits if n != "train"]
    held = set()
    for n in evals:
        held.update(zip(splits[n]["premise"], splits[n]["hypothesis"], strict=True))
    keep = np.array([pair not in held for pair in zip(train["premise"], train["hypothesis"], strict=True)],
                    dtype=bool)
    out = dict(splits)
    out["train"] = train[keep].reset_index(drop=True)
    train_ids = set(out["train"]["pair_id"].astype(str))
    for n in evals:
        ids = splits[n]["pair_id"].astype(str)
        if ids.isin(train_ids).any():
            frame = splits[n].copy()
            frame["pair_id"] = [f"{n}/{i}" for i in ids]
            out[n] = frame
    return out, int((~keep).sum())


class NLITask(Task):
    name = "nli"
    format_noun = "an NLI format"
    schemes = ("hans", "mnli", "sick", "glue-tsv", "hf")
    columns = NLI_COLUMNS
    id_column = "pair_id"
    leak_columns = ("premise", "hypothesis")
    example_columns = ("pair_id", "premise", "hypothesis", "label", "group")
    marks_constructions = True
    split_type_rule = ("nli split", "not a table of pairs")

    # -- data: shape, groups, labels
    def is_split(self, split: Any) -> bool:
        return isinstance(split, pd.DataFrame)

    def frame(self, split: Any) -> pd.DataFrame:
        return split

    def take(self, split: Any, index: Any) -> pd.DataFrame:
        return split.iloc[index].reset_index(drop=True)

    def input_digest(self, split: Any, max_length: int | None = None) -> str:
        h = hashlib.sha256(f"max_length={max_length}\n".encode())
        for p, q in zip(split["premise"].tolist(), split["hypothesis"].tolist(), strict=True):
            h.update(f"{p}\t{q}\n".encode())
        return h.hexdigest()[:20]

    def group_name(self, bias: Any, label: Any) -> str:
        return nli_group(bias, label)

    def label_names(self, split: Any) -> list[str]:
        return list(NLI_LABELS)

    # -- data: loading and storing
    def generated(self, cfg: StudyConfig) -> dict[str, pd.DataFrame]:
        return generated_from_json(self.sections(cfg).data.model_dump_json())

    def encode_split(self, name: str, split: Any) -> dict[str, bytes]:
        if not isinstance(split, pd.DataFrame):
            raise DebiaskdError(f"split '{name}' is not a DataFrame", rule="nli split")
        files = {f"{name}.jsonl": frame_to_jsonl(split)}
        if name in HANS_LAYOUT_SPLITS:
            files[f"{name}_hans.tsv"] = frame_to_hans_tsv(split)
        return files

    def decode_split(self, folder: Any, name: str, frame: pd.DataFrame) -> pd.DataFrame:
        return frame

    def holdout_view(self, base: Any, load: Loader, spec: str, split: str) -> Any:
        return base  # a pair is the same row whichever split it lands in

    def derives_split(self, name: str, spec: str, train_is_real: bool) -> bool:
        return False

    def finish_build(self, cfg: StudyConfig, splits: dict[str, Any], specs: dict[str, str],
                     meta: dict[str, Any], load: Loader) -> dict[str, Any]:
        if specs["challenge"].strip() in ("generated:", "generated:challenge"):
            # the embedded challenge comes with its dev split (disjoint constructions) and their design
            splits["challenge_dev"] = load("generated:challenge_dev", "challenge_dev")
            meta["constructions"] = subcase_table()
        splits, meta["dropped_train_overlaps"] = deduplicate(splits)
        return splits

    def spec_split_name(self, split: Any) -> str:
        hans_like = "subcase" in split.columns and as_text(split["subcase"]).ne("").any()
        return "challenge" if hans_like else "test"

    # -- data: validation
    def split_failures(self, split: Any, file_label: str) -> list[Any]:
        return []

    def validation_rules(self, split: Any, cfg: ValidationConfig) -> tuple[pd.DataFrame, list[tuple[str, Any]]]:
        import great_expectations as gx  # slow (seconds) and only needed to validate

        E = gx.expectations
        df = split
        present = [c for c in NLI_COLUMNS if c in df.columns]
        frame = df.reset_index(drop=True).copy()
        rules: list[tuple[str, Any]] = [
            ("schema: required columns", E.ExpectTableColumnsToMatchSet(column_set=list(NLI_COLUMNS),
                                                                        exact_match=False)),
            ("non-empty split", E.ExpectTableRowCountToBeBetween(min_value=1)),
        ]
        for c in present:
            rules.append((f"no missing values in {c}", E.ExpectColumnValuesToNotBeNull(column=c)))
        for c in ("pair_id", "premise", "hypothesis", "label", "heuristic", "group"):
            if c in frame.columns:
                frame[f"_{c}_is_str"] = is_type(frame[c], str)
                rules.append((f"type: {c} is text",
                              E.ExpectColumnValuesToBeInSet(column=f"_{c}_is_str", value_set=[True])))
        if "bias_aligned" in frame.columns:
            frame["_bias_aligned_is_bool"] = is_type(frame["bias_aligned"], (bool, np.bool_))
            rules.append(("type: bias_aligned is boolean",
                          E.ExpectColumnValuesToBeInSet(column="_bias_aligned_is_bool", value_set=[True])))
        for c in ("premise", "hypothesis"):
            if c in frame.columns:
                frame[f"_{c}_text"] = frame[c].map(lambda v: v.strip() if isinstance(v, str) else "")
                rules.append((f"text length: {c} non-empty and at most {cfg.max_text_chars} chars",
                              E.ExpectColumnValueLengthsToBeBetween(column=f"_{c}_text", min_value=1,
                                                                    max_value=cfg.max_text_chars)))
        if "label" in frame.columns:
            frame["_label"] = frame["label"].map(lambda v: v if isinstance(v, str) else "<missing>")
            rules.append(("label set", E.ExpectColumnValuesToBeInSet(
                column="_label", value_set=sorted({*NLI_LABELS, *TWO_WAY_LABELS}))))
        if "heuristic" in frame.columns:
            frame["_heuristic"] = frame["heuristic"].map(lambda v: v if isinstance(v, str) else "<missing>")
            rules.append(("heuristic set", E.ExpectColumnValuesToBeInSet(
                column="_heuristic", value_set=sorted({*BIAS_TYPES, NO_HEURISTIC}))))
        rules += group_and_id_rules(frame, E, ("heuristic", "label"), "group = heuristic/label", "pair_id", as_text)
        if "construction" in frame.columns:  # optional; rows without a mark (None) are allowed
            frame["_construction_ok"] = frame["construction"].map(lambda v: v is None or isinstance(v, str) or (
                isinstance(v, float) and np.isnan(v)))
            rules.append(("type: construction is text",
                          E.ExpectColumnValuesToBeInSet(column="_construction_ok", value_set=[True])))
        if "construction_seen" in frame.columns:
            frame["_construction_seen_is_bool"] = is_type(frame["construction_seen"], (bool, np.bool_))
            rules.append(("type: construction_seen is boolean",
                          E.ExpectColumnValuesToBeInSet(column="_construction_seen_is_bool", value_set=[True])))
        return frame, rules

    def challenge_group_counts(self, split: Any) -> dict[str, int] | None:
        """Each heuristic present × each gold label (all three HANS heuristics when any is present)."""
        frame = split
        if "heuristic" not in frame.columns:
            return None
        label_text, heuristic_text = as_text(frame["label"]), as_text(frame["heuristic"])
        labels = sorted(set(label_text))
        label_set = list(TWO_WAY_LABELS) if set(labels) <= set(TWO_WAY_LABELS) else labels
        heuristics = [h for h in dict.fromkeys(heuristic_text) if h != NO_HEURISTIC]
        if any(h in HANS_HEURISTICS for h in heuristics):
            heuristics = list(dict.fromkeys([*HANS_HEURISTICS, *heuristics]))
        got = Counter(zip(heuristic_text, label_text, strict=True))
        return {f"{h}/{lab}": int(got.get((h, lab), 0)) for h in heuristics for lab in label_set}

    # -- the augment step
    def augment(self, cfg: StudyConfig, splits: dict[str, Any]) -> tuple[dict[str, Any], int]:
        splits = dict(splits)
        bias = fit_bias_model(splits["train"], cfg.debias.bias_model, cfg.augment.seed)
        new_rows = augment_nli(splits["train"], cfg.augment, cfg.augment.seed)
        splits["train_augmented"] = pd.concat([splits["train"], new_rows], ignore_index=True)
        for name in list(splits):
            splits[name] = add_bias_probs(splits[name], bias.predict_proba(splits[name]))
        return splits, len(new_rows)

    # -- evaluation
    def two_way(self, frame: pd.DataFrame) -> bool:
        return is_two_way(frame["label"].tolist())

    def check_model_labels(self, loaded: Any, data: Any, spec: str) -> None:
        names = set(loaded.label_names)
        gold = {str(v) for v in data["label"].unique()}
        two_way = gold <= {"entailment", "non-entailment"} and "entailment" in names
        if not two_way and not gold <= names:
            raise DebiaskdError(
                f"the model predicts {sorted(names)} but the data has labels {sorted(gold - names)} "
                f"({len(names)} model labels for {len(gold)} data labels; data: {spec})",
                file=str(loaded.path), rule="model label count",
            )

    def serving_inputs(self) -> tuple[Any, Any]:
        from mlflow.types import ColSpec, Schema  # slow (MLflow) and only needed to log a model

        inputs = Schema([ColSpec("string", "premise"), ColSpec("string", "hypothesis")])
        example = pd.DataFrame({"premise": ["The doctor saw the lawyer near the bank."],
                                "hypothesis": ["The lawyer saw the doctor."]})
        return inputs, example

    # -- training
    def make_inputs(self, data: Any, label_names: list[str], tokenizer: Any = None, max_length: int = 64) -> Any:
        from debiaskd.training.inputs import TextPairInputs  # torch: slow, and only needed to train

        return TextPairInputs(data, label_names, tokenizer, max_length)

    def check_model_source(self, model_cfg: Any) -> None:
        if model_cfg.teacher != "tiny":
            from debiaskd.training.models import resolve_source  # torch/transformers: slow, only for a named model

            resolve_source(model_cfg.teacher)

    def build_model(self, model_cfg: Any, role: str, seed: int, *, init_from: Any = None,
                    teacher_model: Any = None, layers: int | None = None, layer_map: list[int] | None = None,
                    num_classes: int = 10, tokenizer: Any = None) -> tuple[Any, Any, dict[str, Any]]:
        # torch and transformers: slow, and only needed to train
        from debiaskd.training.models import build_nli_student, build_nli_teacher, init_from_teacher

        meta: dict[str, Any] = {}
        tokenizer = getattr(init_from, "tokenizer", None) or tokenizer
        if role == "teacher":
            model, tokenizer = build_nli_teacher(model_cfg, seed)
        else:
            base = init_from.model if init_from is not None else teacher_model
            if base is None or tokenizer is None:
                ref, ref_tok = build_nli_teacher(model_cfg, seed)
                base = base or ref
                tokenizer = tokenizer or ref_tok
            model = build_nli_student(base.config, model_cfg, seed, layers)
            if init_from is not None:
                meta["layer_map"] = init_from_teacher(model, init_from.model, layer_map)
        meta["layers"] = int(model.config.num_hidden_layers)
        meta["hidden_size"] = int(model.config.hidden_size)
        return model, tokenizer, meta
