"""Bad input, round two (issue 21): properties over generated corruptions of valid files.

Where ``test_bad_input.py`` and ``test_bad_input_round2.py`` hold the hand-written table of cases,
this file lets Hypothesis corrupt VALID inputs (truncations, inserted or replaced bytes — NUL,
invalid UTF-8, very long runs —, header columns duplicated or dropped, fields added or removed,
JSON values swapped for objects, numbers or lists, YAML values swapped, manifests and model
folders edited) and checks the one outcome property of the command line on each:

* exit 0 — a corruption may leave a file valid (a truncation at a row boundary, say); then the
  output it was asked for is written whole; or
* exit 2 — no traceback, a message of at most a few KB that names the file (or folder), and
  nothing written: the working folder is byte-for-byte unchanged, no ``--json``/``--report``/
  ``--out`` file appears, no MLflow run is created or left RUNNING.

Never exit 1: that is an unexpected exception, i.e. a bug (fix it in the library; add a
hand-written case to ``test_bad_input_round2.py``).

Every command runs in-process through :func:`debiaskd.cli.main`; its rich consoles are swapped
for in-memory ones (``capsys`` cannot be used inside ``@given``). The examples are derandomized
(CI reproducible) and sized so the file runs in about a minute on two cores.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import debiaskd.cli as cli
from cli_checks import MAX_MESSAGE
from cli_checks import squash as _squash
from data_fixtures import tree_snapshot

LABELS = ("entailment", "neutral", "contradiction")

# One profile for the whole file: reproducible (derandomize; no example database), no deadline
# (the first call of a command imports Great Expectations or transformers). ``too_slow`` is
# suppressed because every example is a whole CLI command on files (tens to hundreds of ms by
# design), and ``data_too_large`` because the "very long run" corruptions are large on purpose.
_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]


# For a longer hunt (not in CI): DEBIASKD_PROPERTY_SCALE=5 multiplies the examples, DEBIASKD_PROPERTY_RANDOM=1
# draws fresh ones on each run instead of the fixed, reproducible sequence.
_SCALE = float(os.environ.get("DEBIASKD_PROPERTY_SCALE", "1"))
_RANDOM = os.environ.get("DEBIASKD_PROPERTY_RANDOM") == "1"


def _settings(n: int) -> settings:
    return settings(max_examples=max(1, round(n * _SCALE)), deadline=None, derandomize=not _RANDOM, database=None,
                    suppress_health_check=_SLOW)


# --------------------------------------------------------------------------- running the CLI
class Outcome:
    def __init__(self, code: int, err: str, out: str, trace: str | None) -> None:
        self.code, self.err, self.out, self.trace = code, err, out, trace

    def describe(self) -> str:
        return f"exit {self.code}\nstderr:\n{self.err[-2500:]}\nstdout:\n{self.out[-500:]}\n{self.trace or ''}"


def run_cli(argv: list[str]) -> Outcome:
    """``debiaskd ARGV`` in-process; the rich consoles and sys.stdout/err captured. An exception that
    escapes :func:`debiaskd.cli.main` is what the console script shows as a traceback and exit 1."""
    from rich.console import Console

    err, out = io.StringIO(), io.StringIO()
    sys_err, sys_out = io.StringIO(), io.StringIO()
    saved = cli.err, cli.out
    cli.err, cli.out = Console(file=err, width=200), Console(file=out, width=200)
    trace = None
    try:
        with contextlib.redirect_stdout(sys_out), contextlib.redirect_stderr(sys_err):
            try:
                code = cli.main(argv)
            except Exception:  # the property under test: nothing escapes main
                trace = traceback.format_exc()
                code = 1
    finally:
        cli.err, cli.out = saved
    return Outcome(code, err.getvalue() + sys_err.getvalue(), out.getvalue() + sys_out.getvalue(), trace)


def check_outcome(argv: list[str], root: Path, names: list[str], output: Path | None,
                  well_formed: Callable[[Path], None] | None, skip: tuple[str, ...] = ()) -> Outcome:
    """The outcome property: exit 0 with ``output`` written whole, or exit 2, cleanly, with nothing changed."""
    before = tree_snapshot(root, skip)
    result = run_cli(argv)
    event(f"exit {result.code}")  # --hypothesis-show-statistics: how many corruptions were refused
    assert result.code in (0, 2), result.describe()
    assert "Traceback" not in result.err + result.out, result.describe()
    if result.code == 0:
        if output is not None:
            assert output.is_file(), result.describe()
            if well_formed is not None:
                well_formed(output)
            leftovers = [p.name for p in output.parent.iterdir() if p.name.startswith(f".{output.name}.")]
            assert not leftovers, leftovers
        return result
    assert "error:" in result.err, result.describe()
    assert len(result.err.encode()) <= MAX_MESSAGE, f"{len(result.err.encode())} bytes:\n{result.err[:2000]}"
    squashed = _squash(result.err)
    assert any(_squash(n) in squashed for n in names), f"none of {names} in:\n{result.err[-2500:]}"
    assert tree_snapshot(root, skip) == before, "a failed command changed files:\n" + result.describe()
    if output is not None:
        assert not output.exists(), result.describe()
    return result


# ------------------------------------------------------------------------------- valid bases
def _mnli_plain(n: int = 12) -> str:
    rows = "".join(f"{i}\tThe cat sat on mat {i}.\tA cat sat.\t{LABELS[i % 3]}\n" for i in range(n))
    return "index\tpremise\thypothesis\tgold_label\n" + rows


def _mnli_glue(n: int = 12) -> str:
    header = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
              "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")
    rows = []
    for i in range(n):
        p, h, lab = f"The doctor saw the lawyer {i}.", "The lawyer saw the doctor.", LABELS[i % 3]
        rows.append(f"{i}\t{100 + i}\t{100 + i}e\tfiction\t( {p} )\t( {h} )\t(ROOT {p})\t(ROOT {h})\t{p}\t{h}\t"
                    f"{lab}\t{lab}")
    return header + "\n" + "\n".join(rows) + "\n"


def _mnli_jsonl(n: int = 12) -> str:
    return "".join(json.dumps({"pairID": f"p{i}", "premise": f"The judge thanked the actor {i}.",
                               "hypothesis": "The actor thanked the judge.", "gold_label": LABELS[i % 3],
                               "genre": "fiction"}) + "\n" for i in range(n))


def _sick(n: int = 12) -> str:
    header = "pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tSemEval_set"
    rows = [f"{i}\tA man is playing a guitar {i}\tA person plays music\t{LABELS[i % 3].upper()}\t{1 + i % 4}.5\t"
            f"{'TEST' if i % 2 else 'TRIAL'}" for i in range(n)]
    return header + "\n" + "\n".join(rows) + "\n"


def _hans_from(dataset: Path, n: int = 16) -> str:
    lines = (dataset / "challenge_hans.tsv").read_text(encoding="utf-8").splitlines()
    body = lines[1:]
    step = max(1, len(body) // n)
    return "\n".join([lines[0], *body[::step][:n]]) + "\n"


class Bases(dict):
    """The valid bases (a dict) with a short repr: Hypothesis prints the arguments of a failing example."""

    def __repr__(self) -> str:
        return f"<valid bases under {self['root']}>"


@pytest.fixture(scope="module")
def bases() -> dict:
    """The valid inputs, built once: text files, a config, a smoke dataset folder and a tiny model."""
    from debiaskd.core.config import load_config
    from debiaskd.training.models import build_nli_teacher, save_model

    with tempfile.TemporaryDirectory(prefix="debiaskd-props-") as tmp:
        root = Path(tmp)
        dataset = root / "dataset"
        assert run_cli(["data", "generate", "--preset", "smoke", "--out", str(dataset)]).code == 0
        cfg = load_config("smoke", overrides=["nli_model.tiny_layers=1", "nli_model.tiny_hidden=16",
                                              "nli_model.tiny_heads=1"])
        model, tokenizer = build_nli_teacher(cfg.nli_model, seed=0, num_labels=3)
        model_dir = save_model(model, root / "model", {"task": "nli", "num_labels": 3, "label_names": list(LABELS)},
                               tokenizer)
        config = load_config("smoke").to_dict()
        config["seeds"] = [0, 1]
        config["nli_data"]["n_train"] = 60
        config["teacher_train"]["lr"] = 0.001
        texts = {"mnli-plain.tsv": _mnli_plain(), "mnli-glue.tsv": _mnli_glue(), "mnli.jsonl": _mnli_jsonl(),
                 "sick.txt": _sick(), "hans.tsv": _hans_from(dataset),
                 "config.yaml": yaml.safe_dump(config, sort_keys=False)}
        for name, text in texts.items():
            (root / name).write_text(text, encoding="utf-8")
        yield Bases({"root": root, "dataset": dataset, "model": model_dir,
                     **{name: (root / name).read_bytes() for name in texts}})


# ------------------------------------------------------------------------------ corruptions
NASTY = [b"\x00", b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\t", b"\n", b"\r", b"\r\n",
         b'"', b"\\", b"{", b"[", b"}", b"-", b"#", b"&a", b"*a", b"!!python/object:os.system", b"\x1b[2J",
         "\u2028".encode(), "é".encode(), b" " * 3]
RUN_BYTES = [b"\x00", b"\xff", b"\t", b"\n", b"x", b"{", b"[", b" ", b"9"]


@st.composite
def byte_corruption(draw, data: bytes) -> bytes:
    """Truncate at a byte, or insert, replace or delete bytes (NUL, invalid UTF-8, a very long run)."""
    kind = draw(st.sampled_from(["truncate", "insert", "replace", "delete", "run"]))
    pos = draw(st.integers(0, len(data)))
    if kind == "truncate":
        return data[:pos]
    if kind == "delete":
        return data[:pos] + data[pos + draw(st.integers(1, 64)):]
    if kind == "run":
        chunk = draw(st.sampled_from(RUN_BYTES)) * draw(st.sampled_from([257, 4096, 70_000, 300_000]))
    else:
        chunk = draw(st.one_of(st.sampled_from(NASTY), st.binary(min_size=1, max_size=12)))
    if kind == "replace":
        return data[:pos] + chunk + data[pos + len(chunk):]
    return data[:pos] + chunk + data[pos:]


FIELD_TEXT = st.one_of(
    st.sampled_from(["", " ", "-", "ENTAILMENT", " neutral ", "not_entailment", "non-entailment", "0", "1", "2", "3",
                     "-1", "nan", "None", "null", "true", "[1, 2]", '{"a": 1}', "x" * 5000, "\\N", '"quoted"']),
    st.text(max_size=30),
)


@st.composite
def tsv_corruption(draw, data: bytes) -> bytes:
    """A structural edit of a tab-separated file: header columns, fields per row, rows, values, line ends."""
    lines = data.decode("utf-8").split("\n")
    ending = lines.pop() if lines[-1] == "" else None
    rows = [line.split("\t") for line in lines]
    op = draw(st.sampled_from(["dup-header", "drop-header", "rename-header", "add-field", "drop-field", "drop-row",
                               "dup-row", "set-field", "swap-fields", "header-only", "crlf", "blank-lines"]))
    r = draw(st.integers(1, len(rows) - 1))
    c = draw(st.integers(0, len(rows[0]) - 1))
    if op == "dup-header":
        rows[0].insert(c, rows[0][c])
    elif op == "drop-header":
        del rows[0][c]
    elif op == "rename-header":
        rows[0][c] = draw(FIELD_TEXT)
    elif op == "add-field":
        rows[r].insert(min(c, len(rows[r])), draw(FIELD_TEXT))
    elif op == "drop-field":
        del rows[r][min(c, len(rows[r]) - 1)]
    elif op == "drop-row":
        del rows[r]
    elif op == "dup-row":
        rows.insert(r, list(rows[r]))
    elif op == "set-field":
        rows[r][min(c, len(rows[r]) - 1)] = draw(FIELD_TEXT)
    elif op == "swap-fields":
        d = draw(st.integers(0, len(rows[r]) - 1))
        rows[r][c], rows[r][d] = rows[r][d], rows[r][c]
    elif op == "header-only":
        rows = rows[:1]
    text = "\n".join("\t".join(row) for row in rows) + ("\n" if ending is not None else "")
    if op == "crlf":
        text = text.replace("\n", "\r\n")
    elif op == "blank-lines":
        text = text.replace("\n", "\n\n  \n")
    return text.encode("utf-8", "surrogatepass")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _paths(node, prefix=()):
    """Every (path, value) of a JSON-like tree, containers included."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


@st.composite
def tree_edit(draw, tree):
    """Swap a value anywhere in a JSON/YAML tree for another (object, list, number…), or add/drop a key."""
    import copy

    tree = copy.deepcopy(tree)
    paths = [p for p, _ in _paths(tree)]
    path = draw(st.sampled_from(paths))
    op = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
    if not path:
        return draw(JSON_VALUES) if op == "replace" else tree
    parent = tree
    for part in path[:-1]:
        parent = parent[part]
    if op == "replace":
        parent[path[-1]] = draw(JSON_VALUES)
    elif op == "drop":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(max_size=12))] = draw(JSON_VALUES)
    else:
        parent.append(draw(JSON_VALUES))
    return tree


@st.composite
def jsonl_corruption(draw, data: bytes) -> bytes:
    """Edit one JSON line: a value swapped for an object/list/number, a key added or dropped, a line replaced."""
    lines = data.decode("utf-8").splitlines()
    i = draw(st.integers(0, len(lines) - 1))
    kind = draw(st.sampled_from(["edit", "edit", "raw-line", "drop-line"]))
    if kind == "edit":
        lines[i] = json.dumps(draw(tree_edit(json.loads(lines[i]))))
    elif kind == "raw-line":
        lines[i] = draw(st.one_of(st.sampled_from(["[]", "42", '"x"', "null", "{", '{"premise": NaN}']),
                                  st.text(max_size=40)))
    else:
        del lines[i]
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


@st.composite
def json_file_corruption(draw, data: bytes) -> bytes:
    if draw(st.booleans()):
        return draw(byte_corruption(data))
    return json.dumps(draw(tree_edit(json.loads(data))), indent=2).encode("utf-8", "surrogatepass")


@st.composite
def yaml_corruption(draw, data: bytes) -> bytes:
    if draw(st.booleans()):
        return draw(byte_corruption(data))
    edited = draw(tree_edit(yaml.safe_load(data)))
    return yaml.safe_dump(edited, sort_keys=False, allow_unicode=True).encode("utf-8", "surrogatepass")


def text_corruption(data: bytes, structural) -> st.SearchStrategy[bytes]:
    return st.one_of(byte_corruption(data), structural(data))


# --------------------------------------------------------------------------- 1. text loaders
TEXT_BASES = {"mnli-plain.tsv": ("mnli", tsv_corruption), "mnli-glue.tsv": ("mnli", tsv_corruption),
              "mnli.jsonl": ("mnli", jsonl_corruption), "hans.tsv": ("hans", tsv_corruption),
              "sick.txt": ("sick", tsv_corruption)}


def _json_report(path: Path) -> None:
    json.loads(path.read_text(encoding="utf-8"))


@_settings(80)
@given(data=st.data())
def test_corrupted_data_files_are_read_or_refused_cleanly(bases, data):
    """``data validate --task nli SCHEME:FILE`` on a corrupted MNLI (tsv/jsonl), HANS or SICK file."""
    name = data.draw(st.sampled_from(sorted(TEXT_BASES)), label="base")
    scheme, structural = TEXT_BASES[name]
    corrupted = data.draw(text_corruption(bases[name], structural), label="bytes")
    with tempfile.TemporaryDirectory(prefix="debiaskd-prop-") as tmp:
        root = Path(tmp)
        f = root / name
        f.write_bytes(corrupted)
        report = root / "report.json"
        result = check_outcome(["data", "validate", "--task", "nli", "--preset", "smoke", f"{scheme}:{f}",
                                "--report", str(report)], root, [str(f)], None, None, skip=("report.json",))
        if result.code == 0 or report.exists():  # the report is written whole, valid or not
            _json_report(report)
        leftovers = [p.name for p in root.iterdir() if p.name not in (name, "report.json")]
        assert not leftovers, leftovers


# ------------------------------------------------------------------------------- 2. config
def _yaml_whole(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))  # the IR, then the platform spec
    assert docs and all(isinstance(d, dict) for d in docs)


@_settings(25)
@given(data=st.data())
def test_corrupted_config_is_parsed_or_refused_cleanly(bases, data):
    """``compile --config FILE --out X.yaml`` parses the config without training anything."""
    corrupted = data.draw(yaml_corruption(bases["config.yaml"]), label="config")
    with tempfile.TemporaryDirectory(prefix="debiaskd-prop-") as tmp:
        root = Path(tmp)
        f = root / "config.yaml"
        f.write_bytes(corrupted)
        out = root / "pipeline.yaml"
        check_outcome(["compile", "--preset", "smoke", "--config", str(f), "--out", str(out)], root, [str(f)],
                      out, _yaml_whole)


# ------------------------------------------------------------------------- 3. dataset folder
@st.composite
def dataset_corruption(draw, folder: Path) -> tuple[str, bytes]:
    name = draw(st.sampled_from(["manifest.json", "manifest.json", "test.jsonl", "challenge.jsonl",
                                 "challenge_hans.tsv", "train.jsonl"]))
    data = (folder / name).read_bytes()
    if name == "manifest.json":
        return name, draw(json_file_corruption(data))
    structural = tsv_corruption if name.endswith(".tsv") else jsonl_corruption
    return name, draw(text_corruption(data, structural))


def _rehash(folder: Path, name: str) -> None:
    """Make the manifest's sha256 of the split holding ``name`` match the files again (as if the corrupt file
    had been written by debiaskd), so the corruption reaches the readers behind the hash check."""
    import hashlib

    manifest_file = folder / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    for info in manifest["splits"].values():
        if name in info["files"]:
            parts = [hashlib.sha256((folder / fn).read_bytes()).hexdigest().encode() + fn.encode()
                     for fn in info["files"]]
            info["sha256"] = hashlib.sha256(b"".join(parts)).hexdigest()
    manifest_file.write_text(json.dumps(manifest, indent=2), encoding="utf-8")


@contextlib.contextmanager
def _corrupted_copy(base: Path, folder_name: str, name: str, corrupted: bytes) -> Iterator[tuple[Path, Path]]:
    """A temporary copy of the folder ``base`` with its file ``name`` replaced by ``corrupted``:
    ``(the temporary root, the copied folder)``."""
    with tempfile.TemporaryDirectory(prefix="debiaskd-prop-") as tmp:
        root = Path(tmp)
        folder = root / folder_name
        shutil.copytree(base, folder)
        (folder / name).write_bytes(corrupted)
        yield root, folder


@_settings(15)
@given(data=st.data())
def test_corrupted_dataset_folder_is_read_or_refused_cleanly(bases, data):
    """``data validate --task nli DIR`` on a generated smoke dataset with its manifest or a split file corrupted."""
    name, corrupted = data.draw(dataset_corruption(bases["dataset"]), label="file")
    with _corrupted_copy(bases["dataset"], "ds", name, corrupted) as (root, folder):
        if name != "manifest.json" and data.draw(st.booleans(), label="manifest re-hashed"):
            _rehash(folder, name)
        check_outcome(["data", "validate", "--task", "nli", "--preset", "smoke", str(folder)], root,
                      [str(folder)], None, None)


# --------------------------------------------------------------------------- 4. model folder
@st.composite
def model_corruption(draw, folder: Path) -> tuple[str, bytes]:
    name = draw(st.sampled_from(["debiaskd.json", "config.json", "model.safetensors"]))
    data = (folder / name).read_bytes()
    if name == "model.safetensors":
        kind = draw(st.sampled_from(["truncate", "header", "header-length"]))
        if kind == "truncate":
            return name, data[:draw(st.integers(0, len(data) - 1))]
        size = int.from_bytes(data[:8], "little")
        if kind == "header-length":
            return name, draw(st.integers(0, 2**64 - 1)).to_bytes(8, "little") + data[8:]
        header = data[8:8 + size]
        edited = draw(json_file_corruption(header))
        return name, len(edited).to_bytes(8, "little") + edited + data[8 + size:]
    return name, draw(json_file_corruption(data))


def _evaluate_json_whole(path: Path) -> None:
    assert json.loads(path.read_text(encoding="utf-8"))["n"] == 8


@_settings(60)
@given(data=st.data())
def test_corrupted_model_folder_is_loaded_or_refused_cleanly(bases, data):
    """``evaluate --model DIR --data mnli:FILE --limit 8 --json OUT`` with debiaskd.json, config.json or the
    weights corrupted."""
    name, corrupted = data.draw(model_corruption(bases["model"]), label="file")
    with _corrupted_copy(bases["model"], "model", name, corrupted) as (root, folder):
        spec = bases["root"] / "mnli-plain.tsv"
        out = root / "metrics.json"
        check_outcome(["evaluate", "--preset", "smoke", "--model", str(folder), "--data", f"mnli:{spec}",
                       "--limit", "8", "--json", str(out)], root, [str(folder)], out, _evaluate_json_whole)


# ---------------------------------------------------------------------------- 5. output paths
SEGMENTS = st.one_of(
    st.sampled_from(["plain.txt", "adir", "keep.txt", "dangling", "missing", "..", ".", "x" * 300, "a b", "é.json",
                     "-", "--json", ".hidden", "new.json", "out.yaml", " ", "\n"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1,
            max_size=16),
)


def _output_tree(root: Path) -> None:
    (root / "plain.txt").write_text("mine", encoding="utf-8")
    (root / "adir").mkdir()
    (root / "adir" / "keep.txt").write_text("keep", encoding="utf-8")
    os.symlink(root / "nowhere", root / "dangling")


# validate is drawn less often: a successful one runs the whole expectation suite (about a second)
@_settings(30)
@given(parts=st.lists(SEGMENTS, min_size=1, max_size=4),
       command=st.sampled_from(["evaluate", "compile", "evaluate", "compile", "validate"]))
def test_generated_output_paths_are_refused_before_work_or_written_whole(bases, parts, command):
    """``evaluate --json``, ``data validate --report`` and ``compile --out`` at generated paths (under a file,
    a folder, a missing parent, a dangling link, odd or over-long names): exit 2 before any work, or exit 0
    with the file written whole and nothing else of the user's changed."""
    from unittest import mock

    import debiaskd.data.validate as validate_module
    import debiaskd.evaluation.evaluate as evaluate_module

    spec = bases["root"] / "mnli-plain.tsv"
    with tempfile.TemporaryDirectory(prefix="debiaskd-prop-") as tmp:
        root = Path(tmp)
        _output_tree(root)
        path = root.joinpath(*parts)
        argv, well_formed, work = {
            "evaluate": (["evaluate", "--preset", "smoke", "--model", str(bases["model"]), "--data", f"mnli:{spec}",
                          "--limit", "8", "--json", str(path)], _evaluate_json_whole,
                         (evaluate_module, "evaluate_spec")),
            "compile": (["compile", "--preset", "smoke", "--out", str(path)], _yaml_whole, (cli, "_compile_to_text")),
            "validate": (["data", "validate", "--preset", "smoke", f"mnli:{spec}", "--report", str(path)],
                         _json_report, (validate_module, "validate_spec")),
        }[command]
        before = tree_snapshot(root)
        with mock.patch.object(*work, wraps=getattr(*work)) as worker:
            result = run_cli(argv)
        event(f"{command}: exit {result.code}")
        assert result.code in (0, 2), result.describe()
        assert "Traceback" not in result.err + result.out, result.describe()
        after = tree_snapshot(root)
        if result.code == 2:
            assert not worker.called, "exit 2 after the work was done:\n" + result.describe()
            assert len(result.err.encode()) <= MAX_MESSAGE
            assert _squash(str(path)[:250]) in _squash(result.err), result.describe()
            assert after == before, "a refused output path changed files:\n" + result.describe()
            return
        target = os.path.realpath(path)
        assert os.path.isfile(target), result.describe()
        well_formed(Path(target))
        written = os.path.relpath(target, os.path.realpath(root))
        changed = {k for k in before if after.get(k) != before[k]} - {written}
        assert not changed, f"wrote {written} but also changed {changed}"
        assert not [k for k in after if Path(k).name.startswith(f".{path.name}.")], "a temporary file was left"


# ------------------------------------------------------------------- 6. nothing registered
@pytest.fixture(scope="module")
def tracking_db(bases) -> Path:
    """An empty MLflow sqlite store, created once and copied into each example's folder."""
    import mlflow

    db = bases["root"] / "template-mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@_settings(8)
@given(data=st.data())
def test_failed_evaluate_creates_no_run_and_registers_nothing(bases, tracking_db, data):
    """``evaluate --tracking-uri sqlite:///…`` with a corrupted model or data file: no run is created (none left
    RUNNING), no model registered, and the other files are unchanged."""
    import mlflow
    from mlflow.entities import ViewType

    which = data.draw(st.sampled_from(["model", "data"]), label="corrupt")
    with tempfile.TemporaryDirectory(prefix="debiaskd-prop-") as tmp:
        root = Path(tmp)
        folder = root / "model"
        shutil.copytree(bases["model"], folder)
        spec = root / "mnli.tsv"
        spec.write_bytes(bases["mnli-plain.tsv"])
        if which == "model":
            name, corrupted = data.draw(model_corruption(bases["model"]), label="file")
            (folder / name).write_bytes(corrupted)
            named = [str(folder)]
        else:
            spec.write_bytes(data.draw(text_corruption(bases["mnli-plain.tsv"], tsv_corruption), label="bytes"))
            named = [str(spec)]
        db = root / "mlflow.db"
        shutil.copyfile(tracking_db, db)
        uri = f"sqlite:///{db}"
        out = root / "metrics.json"
        check_outcome(["evaluate", "--preset", "smoke", "--tracking-uri", uri, "--model", str(folder), "--data",
                       f"mnli:{spec}", "--limit", "8", "--json", str(out)], root, named, out, _evaluate_json_whole,
                      skip=("mlflow.db", "mlflow.db-journal"))
        client = mlflow.MlflowClient(uri)
        experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
        runs = client.search_runs(experiments, run_view_type=ViewType.ALL) if experiments else []
        assert not runs, [(r.info.run_id, r.info.status) for r in runs]
        assert not client.search_registered_models()


# ------------------------------------------------------------------------------- vision data
def _idx(magic: int, dims: list[int], payload: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + payload


@pytest.fixture(scope="module")
def vision_bases() -> dict[str, dict[str, bytes]]:
    """Valid vision folders as bytes: MNIST idx (images + labels) and Waterbirds (metadata.csv + PNGs)."""
    from PIL import Image

    n = 40
    rng = random.Random(0)
    mnist = {"t10k-images-idx3-ubyte": _idx(0x803, [n, 28, 28], bytes(rng.randrange(256) for _ in range(n * 784))),
             "t10k-labels-idx1-ubyte": _idx(0x801, [n], bytes(i % 10 for i in range(n)))}
    birds: dict[str, bytes] = {}
    rows = []
    for i in range(24):
        buf = io.BytesIO()
        Image.new("RGB", (12, 12), (i * 10, 255 - i * 10, 0)).save(buf, format="PNG")
        birds[f"imgs/{i}.png"] = buf.getvalue()
        rows.append(f"{i},imgs/{i}.png,{i % 2},{i % 3},{(i // 2) % 2}")
    birds["metadata.csv"] = ("img_id,img_filename,y,split,place\n" + "\n".join(rows) + "\n").encode()
    return {"mnist-idx": mnist, "waterbirds": birds}


@_settings(30)
@given(data=st.data())
def test_corrupted_vision_folders_are_read_or_refused_cleanly(vision_bases, data):
    """``data validate --task vision`` on an MNIST idx or Waterbirds folder with one file corrupted
    (truncated, bytes inserted or replaced: a header that lies about the sizes, an image that is not one)."""
    scheme = data.draw(st.sampled_from(sorted(vision_bases)), label="scheme")
    files = vision_bases[scheme]
    name = data.draw(st.sampled_from(sorted(files)), label="file")
    corrupted = data.draw(byte_corruption(files[name]), label="bytes")
    with tempfile.TemporaryDirectory(prefix="debiaskd-prop-") as tmp:
        root = Path(tmp)
        folder = root / "vision"
        for rel, content in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(corrupted if rel == name else content)
        check_outcome(["data", "validate", "--task", "vision", "--preset", "smoke", f"{scheme}:{folder}"], root,
                      [str(folder)], None, None)
