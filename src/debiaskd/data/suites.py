"""The Great Expectations suites, built by code and saved in the project.

The code is the definition: each task's ``validation_rules`` (``tasks/nli.py``, ``tasks/vision.py``)
derives the check columns of a split and the expectations on them, and :func:`build_suite` turns
those into an ``ExpectationSuite`` named ``<task>_<split>`` (``nli_train``, ``vision_challenge``),
each expectation carrying its rule's name in ``meta.rule`` (the name a failure report gives).

``debiaskd/gx/`` is a file-backed GX project holding the suites of the embedded benchmark under the
default config, one JSON file per task and split in ``gx/expectations/``; open it with
``gx.get_context(mode="file", project_root_dir=<the debiaskd package folder>)``. They are generated,
never edited by hand: ``python -m debiaskd.data.suites`` rewrites them from the code, ``--check``
says whether they still match it (``tests/test_validate.py`` checks the same, so they cannot drift).

A suite depends on the config only through ``validation.max_text_chars`` (the NLI text-length rule)
and on the data only through what the split holds (an optional column's rule is left out where the
column is absent; a vision suite's label and colour sets are those of the data's classes). A
validation builds its suites from the same code with its own config and data, saves them in its own
file-backed context and runs them there (:mod:`debiaskd.data.validate`): with a non-default
threshold, or another data set's classes, that run's suites (shown in its Data Docs) carry those
values, and the saved ones stay the defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from debiaskd.core.config import load_config
from debiaskd.core.errors import DebiaskdError
from debiaskd.data.build import generate_dataset
from debiaskd.data.store import read_dataset
from debiaskd.tasks import TASK_NAMES, get_task

#: the file-backed GX project shipped in the package, and its expectation store
GX_PROJECT = Path(__file__).resolve().parents[1] / "gx"
SUITES_DIR = GX_PROJECT / "expectations"
#: the preset whose config and embedded benchmark the saved suites are built from
REFERENCE_PRESET = "default"


def suite_name(task: str, split: str) -> str:
    return f"{task}_{split}"


def build_suite(name: str, rules: list[tuple[str, Any]]) -> Any:
    """An ``ExpectationSuite`` of ``rules`` (``(rule name, expectation)`` pairs); the rule name goes
    into each expectation's ``meta.rule`` and its ``notes`` (shown beside it in Data Docs)."""
    import great_expectations as gx  # Great Expectations: slow (~4 s), only building a suite needs it

    for rule, expectation in rules:
        expectation.meta = {"rule": rule}
        expectation.notes = f"debiaskd rule: {rule}"
    return gx.ExpectationSuite(name=name, expectations=[e for _, e in rules],
                               meta={"debiaskd": "built by the task's validation_rules"})


def suite_json(suite: Any) -> dict[str, Any]:
    """A suite as saved in the project: GX's JSON form without the ids a context assigns and without
    the GX version (so a GX upgrade alone does not change the files)."""
    data = suite.to_json_dict()
    data.pop("id", None)
    data["meta"] = {k: v for k, v in (data.get("meta") or {}).items() if k != "great_expectations_version"}
    for exp in data.get("expectations", []):
        exp.pop("id", None)
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def reference_suites() -> dict[str, dict[str, Any]]:
    """The code's suites for the embedded benchmark of :data:`REFERENCE_PRESET`, by suite name."""
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="debiaskd-suites-") as tmp:
        for task in TASK_NAMES:
            kind = get_task(task)
            cfg = load_config(REFERENCE_PRESET, task=task)
            ds = read_dataset(generate_dataset(task, REFERENCE_PRESET, Path(tmp) / task))
            for split_name, split in ds.splits.items():
                _, rules = kind.validation_rules(split, cfg.validation)
                name = suite_name(task, split_name)
                out[name] = suite_json(build_suite(name, rules))
    return dict(sorted(out.items()))


def saved_suites(folder: str | Path = SUITES_DIR) -> dict[str, dict[str, Any]]:
    """The suites saved in ``folder`` (default: the project's), by suite name."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(folder).glob("*.json"))}


def write_suites(folder: str | Path = SUITES_DIR) -> list[Path]:
    """Rewrite ``folder``'s suites from the code (stale suite files removed); returns the files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suites = reference_suites()
    for stale in folder.glob("*.json"):
        if stale.stem not in suites:
            stale.unlink()
    written = []
    for name, data in suites.items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m debiaskd.data.suites",
                                     description="Write the saved Great Expectations suites from the code.")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a saved suite differs")
    parser.add_argument("--out", default=str(SUITES_DIR), help="the expectation folder (default: the project's)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            built, saved = reference_suites(), saved_suites(args.out)
            stale = sorted(n for n in built.keys() | saved.keys() if built.get(n) != saved.get(n))
            if stale:
                print(f"saved suites differ from the code: {', '.join(stale)}; run python -m debiaskd.data.suites",
                      file=sys.stderr)
                return 1
            print(f"{len(saved)} saved suites match the code")
            return 0
        written = write_suites(args.out)
    except DebiaskdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} suites to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
