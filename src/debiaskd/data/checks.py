"""The vocabulary of data checks, shared by the validator and the tasks' own rules: a
:class:`Failure`, example rows, and type/text helpers that never crash on a corrupt value."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

MAX_EXAMPLES = 5


@dataclass
class Failure:
    """One broken rule: where, which rule (and GX expectation), what, example rows."""

    file: str
    rule: str
    expectation: str
    message: str
    examples: list = field(default_factory=list)

    def line(self) -> str:
        return f"{self.file}: {self.rule} [{self.expectation}] — {self.message}"


def example(frame: pd.DataFrame, i: int, cols: tuple[str, ...]) -> dict:
    row = frame.iloc[i]
    out = {"row": int(i)}
    for c in cols:
        if c in frame.columns:
            v = row[c]
            v = v if not isinstance(v, str) else (v if len(v) <= 80 else v[:77] + "...")
            out[c] = None if (isinstance(v, float) and np.isnan(v)) else (v.item() if isinstance(v, np.generic) else v)
    return out


def is_type(series: pd.Series, kind: type | tuple[type, ...]) -> pd.Series:
    return series.map(lambda v: isinstance(v, kind) and not (isinstance(v, float) and np.isnan(v)))


def as_text(series: pd.Series) -> pd.Series:
    """Every value as text, hashable and sortable: a missing value, a number, a list or an object in a
    corrupt file becomes its ``str`` (pandas' ``astype(str)`` keeps NaN as NaN)."""
    return series.map(lambda v: v if isinstance(v, str) else str(v)).astype(object)


def group_and_id_rules(frame: pd.DataFrame, expectations: Any, parts: tuple[str, str], name: str, id_column: str,
                       as_id: Callable[[pd.Series], pd.Series]) -> list[tuple[str, Any]]:
    """The rules every task's split shares (Great Expectations ``expectations`` module): ``group`` is
    ``<parts[0]>/<parts[1]>`` on every row (rule ``name``), and ``id_column`` is unique. Adds the derived
    columns to ``frame``; a rule whose columns are absent is left out."""
    rules: list[tuple[str, Any]] = []
    if {*parts, "group"} <= set(frame.columns):
        frame["_group_consistent"] = [g == f"{a}/{b}" for g, a, b in
                                      zip(frame["group"], frame[parts[0]], frame[parts[1]], strict=True)]
        rules.append((name, expectations.ExpectColumnValuesToBeInSet(column="_group_consistent", value_set=[True])))
    if id_column in frame.columns:
        frame[f"_{id_column}"] = as_id(frame[id_column])
        rules.append((f"unique {id_column}", expectations.ExpectColumnValuesToBeUnique(column=f"_{id_column}")))
    return rules
