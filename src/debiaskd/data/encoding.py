"""Deterministic encodings of a split's files: JSON lines, the HANS tab-separated layout, ``.npy``.

Same input → same bytes (no timestamps; schema columns first, then the others in frame order).
Used by the tasks (:mod:`debiaskd.tasks`) and the dataset folders (:mod:`debiaskd.data.store`).
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd

from debiaskd.core.errors import DebiaskdError
from debiaskd.data.schema import HANS_COLUMNS, NLI_COLUMNS, to_two_way


# ------------------------------------------------------------------------- encoding
def jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and np.isnan(value):
        return None
    if value is pd.NA or value is None:
        return None
    return value


def frame_to_jsonl(df: pd.DataFrame, first: tuple[str, ...] = NLI_COLUMNS) -> bytes:
    """Rows as JSON lines, schema columns first, then the other columns in frame order."""
    cols = [c for c in first if c in df.columns] + [c for c in df.columns if c not in first]
    records = df[cols].to_dict(orient="records")
    lines = [json.dumps({k: jsonable(v) for k, v in r.items()}, ensure_ascii=False) for r in records]
    return ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")


def jsonl_to_frame(data: bytes, file_label: str, columns: tuple[str, ...] = NLI_COLUMNS) -> pd.DataFrame:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DebiaskdError(f"not UTF-8 text (byte {exc.start})", file=file_label, rule="utf-8") from exc
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DebiaskdError(f"line {i} is not valid JSON ({exc.msg})", file=file_label,
                                rule="jsonl", examples=[line[:200]]) from exc
        except RecursionError as exc:
            raise DebiaskdError(f"line {i} is JSON nested too deeply", file=file_label, rule="jsonl") from exc
        if not isinstance(row, dict):
            raise DebiaskdError(f"line {i} is a JSON {type(row).__name__}, not an object (one row per line)",
                                file=file_label, rule="jsonl", examples=[line[:200]])
        rows.append(row)
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    keys: list[str] = list(rows[0].keys())
    for r in rows[1:]:
        keys += [k for k in r if k not in keys]
    return pd.DataFrame(rows, columns=keys)


def _tsv_cell(value: Any) -> str:
    return " ".join(str(value).replace("\t", " ").split())


def _binary_parse(text: str) -> str:
    toks = text.replace(".", " .").split()
    out = toks[-1] if toks else ""
    for tok in reversed(toks[:-1]):
        out = f"( {tok} {out} )"
    return out


def _parse(text: str) -> str:
    toks = text.replace(".", " .").split()
    return "(ROOT (S " + " ".join(f"(X {t})" for t in toks) + "))"


def frame_to_hans_tsv(df: pd.DataFrame) -> bytes:
    """The HANS tab-separated layout (two-way gold labels)."""
    lines = ["\t".join(HANS_COLUMNS)]
    for r in df.itertuples(index=False):
        label = r.label if r.label in ("entailment", "non-entailment") else to_two_way(r.label)
        cells = [label, _binary_parse(r.premise), _binary_parse(r.hypothesis), _parse(r.premise),
                 _parse(r.hypothesis), r.premise, r.hypothesis, r.pair_id, r.heuristic, r.subcase, r.template]
        lines.append("\t".join(_tsv_cell(c) for c in cells))
    return ("\n".join(lines) + "\n").encode("utf-8")


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()
