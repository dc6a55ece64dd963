"""Great Expectations validation: passes on generated data, names file + rule on corruption."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from cli_checks import squash
from data_fixtures import shared_file, smoke
from debiaskd.cli import main
from debiaskd.core.errors import DebiaskdError
from debiaskd.data.build import generate_dataset
from debiaskd.data.schema import ImageSplit
from debiaskd.data.store import read_dataset, write_dataset
from debiaskd.data.suites import GX_PROJECT, reference_suites, saved_suites, suite_json
from debiaskd.data.validate import validate_dataset, validate_spec
from debiaskd.jobs.registry import make_job
from debiaskd.tracking import service as tracking


@pytest.fixture(scope="module")
def nli_dir(tmp_path_factory):
    return generate_dataset("nli", "smoke", tmp_path_factory.mktemp("nli") / "d")


@pytest.fixture(scope="module")
def vision_dir(tmp_path_factory):
    return generate_dataset("vision", "smoke", tmp_path_factory.mktemp("vision") / "d")


def test_generated_data_validates(nli_dir, vision_dir, tmp_path):
    for path, task in ((nli_dir, "nli"), (vision_dir, "vision")):
        report = validate_spec(str(path), task, smoke(task))
        assert report.ok, report.summary()
        expected = {"train", "validation", "test", "challenge"} | ({"challenge_dev"} if task == "nli" else set())
        assert {s.split for s in report.splits} == expected
        assert all(s.evaluated >= 8 for s in report.splits)
        report.raise_for_failures()  # no-op
        saved = json.loads(report.to_json(tmp_path / f"{task}.json"))
        assert saved["ok"] is True and (tmp_path / f"{task}.json").is_file()


def _corrupt_nli(split: str, fn):
    def apply(splits):
        splits[split] = fn(splits[split].copy())
        return splits
    return apply


def _set(col, value, row=0):
    def fn(df):
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return df
    return fn


def _leak(splits):
    splits["train"] = splits["train"].copy()
    splits["train"].loc[0, ["premise", "hypothesis"]] = splits["test"].loc[3, ["premise", "hypothesis"]].to_numpy()
    return splits


def _drop_group(splits):
    ch = splits["challenge"]
    splits["challenge"] = ch[ch.group != "lexical_overlap/non-entailment"].reset_index(drop=True)
    return splits


def _shared_construction(splits):
    dev = splits["challenge_dev"].copy()
    dev.loc[0, "construction"] = splits["challenge"].loc[0, "construction"]
    splits["challenge_dev"] = dev
    return splits


def _held_out_in_train(splits):
    ch = splits["challenge"]
    held = ch.loc[~ch.construction_seen.astype(bool), "construction"].iloc[0]
    splits["train"] = _set("construction", held, 4)(splits["train"].copy())
    return splits


def _imbalance(splits):
    df = splits["validation"].copy()
    df.loc[: int(len(df) * 0.9), "label"] = "entailment"
    df["group"] = df["heuristic"] + "/" + df["label"]
    splits["validation"] = df
    return splits


def _duplicate_id(df):
    df.loc[1, "pair_id"] = df.loc[0, "pair_id"]
    return df


NLI_CORRUPTIONS = {
    "wrong label": (_corrupt_nli("train", _set("label", "maybe")), "label set", "train.jsonl"),
    "empty hypothesis": (_corrupt_nli("test", _set("hypothesis", "   ")), "text length: hypothesis", "test.jsonl"),
    "duplicate id": (_corrupt_nli("validation", _duplicate_id), "unique pair_id", "validation.jsonl"),
    "train/test leak": (_leak, "shared between train and test", "test.jsonl"),
    "missing bias group": (_drop_group, "every bias group present", "challenge.jsonl"),
    "renamed column": (_corrupt_nli("train", lambda df: df.rename(columns={"hypothesis": "hyp"})),
                       "schema: required columns", "train.jsonl"),
    "oversized text": (_corrupt_nli("train", _set("premise", "word " * 600)), "text length: premise", "train.jsonl"),
    "NaN premise": (_corrupt_nli("test", _set("premise", np.nan)), "no missing values in premise", "test.jsonl"),
    "label imbalance": (_imbalance, "label balance", "validation.jsonl"),
    "inconsistent group": (_corrupt_nli("train", _set("group", "none/entailment", 5)), "group = heuristic/label",
                           "train.jsonl"),
    "wrong type": (_corrupt_nli("train", _set("bias_aligned", "yes")), "type: bias_aligned", "train.jsonl"),
    "seen flag not boolean": (_corrupt_nli("challenge", _set("construction_seen", "no", 2)),
                              "type: construction_seen", "challenge.jsonl"),
    "challenge splits share a construction": (_shared_construction, "challenge and challenge_dev share no construction",
                                              "challenge_dev.jsonl"),
    "held-out construction in train": (_held_out_in_train, "no held-out challenge construction in train",
                                       "train.jsonl"),
}


@pytest.mark.parametrize("name", list(NLI_CORRUPTIONS))
def test_nli_corruption_fails_naming_file_and_rule(nli_dir, tmp_path, name):
    corrupt, rule, file = NLI_CORRUPTIONS[name]
    ds = read_dataset(nli_dir)
    bad = write_dataset(tmp_path / "bad", "nli", corrupt(dict(ds.splits)))
    assert bad["task"] == "nli"
    report = validate_dataset(tmp_path / "bad", smoke())
    assert not report.ok
    with pytest.raises(DebiaskdError) as err:
        report.raise_for_failures()
    text = str(err.value)
    assert rule in text and file in text, text
    hit = next(f for f in report.failures if rule in f.rule)
    assert hit.file.endswith(file) and hit.examples, hit
    saved = json.loads(report.to_json())
    assert saved["ok"] is False and saved["n_failures"] >= 1


def _vision_corrupt(kind):
    def apply(splits):
        tr = splits["train"]
        if kind == "shape":
            splits["train"] = ImageSplit(tr.images[:, :1], tr.frame)
        elif kind == "label":
            frame = tr.frame.copy()
            frame.loc[2, "label"] = 12
            frame.loc[2, "group"] = f"12/{frame.loc[2, 'color']}"
            splits["train"] = ImageSplit(tr.images, frame)
        elif kind == "count":
            splits["train"] = ImageSplit(tr.images[:-3], tr.frame)
        return splits
    return apply


@pytest.mark.parametrize("kind,rule,file", [
    ("shape", "image shape", "train_images.npy"),
    ("label", "label set 0..9", "train.jsonl"),
    ("count", "one image per row", "train_images.npy"),
])
def test_vision_corruption_fails(vision_dir, tmp_path, kind, rule, file):
    ds = read_dataset(vision_dir)
    write_dataset(tmp_path / "bad", "vision", _vision_corrupt(kind)(dict(ds.splits)))
    report = validate_dataset(tmp_path / "bad", smoke("vision"))
    with pytest.raises(DebiaskdError) as err:
        report.raise_for_failures()
    assert rule in str(err.value) and file in str(err.value)


def test_tampered_file_fails_the_manifest_hash(nli_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(nli_dir, copy)
    lines = (copy / "test.jsonl").read_text(encoding="utf-8").splitlines()
    (copy / "test.jsonl").write_text("\n".join(lines[1:]) + "\n", encoding="utf-8")
    report = validate_spec(str(copy), "nli", smoke())
    assert not report.ok and report.failures[0].rule == "manifest sha256"
    assert "test.jsonl" in report.failures[0].file


@pytest.mark.parametrize("content,rule", [
    (b"", "non-empty file"),
    (b"premise\thypothesis\tgold_label\ncaf\xe9 ok.\tb.\tneutral\n", "utf-8 encoding"),
])
def test_unreadable_files_fail_validation(tmp_path, content, rule):
    path = tmp_path / "x.tsv"
    path.write_bytes(content)
    report = validate_spec(f"mnli:{path}", "nli", smoke())
    assert not report.ok and report.failures[0].rule == rule and str(path) in report.failures[0].file


def test_truncated_gzip_mnist_fails_validation(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    payload = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (5, 28, 28)) + bytes(5 * 784)
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(payload)[:-30])
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 5]) + bytes(5)))
    report = validate_spec(f"mnist-idx:{d}", "vision", smoke("vision"))
    assert not report.ok and report.failures[0].rule == "gzip integrity"
    assert "t10k-images" in report.failures[0].file


@pytest.mark.shared_data
@pytest.mark.parametrize("spec", ["mnli_dev_matched_bert_difficulty.tsv", "sick:SICK.txt"])
def test_real_mnli_and_sick_validate(spec):
    scheme, _, name = spec.rpartition(":")
    path = shared_file("nli", name)
    report = validate_spec(f"{scheme}:{path}" if scheme else str(path), "nli", smoke())
    assert report.ok, report.summary()
    assert report.splits[0].rows > 9000


# ------------------------------------------------------------ GX project, Checkpoint and Data Docs
def test_saved_suites_are_what_the_code_builds_and_gx_reads_them(tmp_path):
    """The suites saved in the package's GX project equal the code's (default config, embedded benchmark),
    and a file-backed GX context opened on a copy of the project reads every one of them."""
    import great_expectations as gx  # slow (~4 s): only this test opens a GX context itself

    built, saved = reference_suites(), saved_suites()
    assert set(built) == {f"nli_{s}" for s in ("train", "validation", "test", "challenge", "challenge_dev")} | {
        f"vision_{s}" for s in ("train", "validation", "test", "challenge")}
    stale = sorted(n for n in built.keys() | saved.keys() if built.get(n) != saved.get(n))
    assert not stale, f"saved suites differ from the code: {stale}; run python -m debiaskd.data.suites"
    assert all(e["meta"]["rule"] for s in saved.values() for e in s["expectations"])
    shutil.copytree(GX_PROJECT, tmp_path / "gx")
    context = gx.get_context(mode="file", project_root_dir=tmp_path)
    assert {suite_json(s)["name"]: suite_json(s) for s in context.suites.all()} == saved


def test_a_validation_builds_data_docs_naming_the_suite_and_the_failed_expectation(nli_dir, tmp_path):
    """Bad data: the Data Docs index lists each split's suite and the failed run; the split's page shows
    the offending value; the error names the index and the failing split's page; the JSON report keeps
    its keys (no paths in it)."""
    ds = read_dataset(nli_dir)
    write_dataset(tmp_path / "bad", "nli", _corrupt_nli("train", _set("label", "maybe"))(dict(ds.splits)))
    docs = tmp_path / "docs"
    report = validate_dataset(tmp_path / "bad", smoke(), docs)
    assert not report.ok and report.docs == docs / "index.html" and report.docs.is_file()
    index = report.docs.read_text(encoding="utf-8")
    assert all(f"nli_{s.split}" in index for s in report.splits) and "Failed" in index
    page = report.docs_pages["train"].read_text(encoding="utf-8")
    assert "nli_train" in page and "maybe" in page and "Failed" in page
    with pytest.raises(DebiaskdError) as err:
        report.raise_for_failures()
    assert str(report.docs) in str(err.value) and str(report.docs_pages["train"]) in str(err.value)
    assert set(report.to_dict()) == {"task", "source", "ok", "n_failures", "splits", "cross_split"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    # a later validation replaces the site it wrote; a folder it did not write is refused
    assert validate_dataset(nli_dir, smoke(), docs).ok and "Failed" not in (docs / "index.html").read_text()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DebiaskdError, match="not a Data Docs site"):
        validate_dataset(nli_dir, smoke(), tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_run_suite_carries_the_configured_threshold_and_docs_only_when_asked(tmp_path):
    """A non-default ``validation.max_text_chars`` reaches the run's suite (its Data Docs show it); with
    ``docs_if_failed`` a valid data set builds no site."""
    report = validate_spec("generated:validation", "nli", smoke("nli", "validation.max_text_chars=12"),
                           tmp_path / "docs")
    assert not report.ok and any("at most 12 chars" in f.rule for f in report.failures)
    suite_page = (tmp_path / "docs" / "expectations" / "nli_test.html").read_text(encoding="utf-8")
    shown = squash(re.sub(r"<[^>]+>", " ", suite_page))
    assert "lessthanorequalto12characterslong" in shown and "debiaskdrule:textlength:premise" in shown
    valid = validate_spec("generated:validation", "nli", smoke(), tmp_path / "none", docs_if_failed=True)
    assert valid.ok and valid.docs is None and not (tmp_path / "none").exists()


def test_cli_invalid_data_exits_2_naming_the_data_docs_page(nli_dir, tmp_path, capsys):
    """``data validate`` on bad data: exit 2, the message names file, rule, rows and the Data Docs page
    (a temporary folder without --docs, DIR/index.html with it); valid data with --docs names the site."""
    ds = read_dataset(nli_dir)
    write_dataset(tmp_path / "bad", "nli", _corrupt_nli("test", _set("hypothesis", "   "))(dict(ds.splits)))
    argv = ["data", "validate", "--preset", "smoke", "--task", "nli", str(tmp_path / "bad")]
    assert main(argv) == 2
    err = squash(capsys.readouterr().err)
    assert "test.jsonl" in err and "textlength:hypothesis" in err and "Exampleoffendingrows" in err
    named = err.split("GreatExpectationsDataDocs:", 1)[1].split("index.html", 1)[0] + "index.html"
    assert Path(named).is_file() and "nli_test" in Path(named).read_text(encoding="utf-8")
    shutil.rmtree(Path(named).parent)
    assert main([*argv, "--docs", str(tmp_path / "docs")]) == 2
    assert squash(str(tmp_path / "docs" / "index.html")) in squash(capsys.readouterr().err)
    assert main(["data", "validate", "--preset", "smoke", str(nli_dir), "--docs", str(tmp_path / "docs")]) == 0
    assert squash(str(tmp_path / "docs" / "index.html")) in squash(capsys.readouterr().out)
    assert "Failed" not in (tmp_path / "docs" / "index.html").read_text(encoding="utf-8")


def test_the_validate_job_writes_logs_and_returns_one_self_contained_data_docs_page(nli_dir, tmp_path):
    """The pipeline's validation step: the site under report_dir/data_docs and in the study run's
    artifacts, and the component's HTML output one file that loads nothing and links only within itself."""
    cfg = smoke("nli", "tracking.experiment=gx-docs")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = tracking.start_study_run(uri, cfg, "gx-docs")
    job = make_job("validate_data", {"config": json.dumps(cfg.to_dict()), "dataset_dir": str(nli_dir), "seed": 1,
                                     "report_dir": str(tmp_path / "v"),
                                     "tracker": {"uri": uri, "study_run_id": run_id}})
    result = job.run()
    assert result["report"]["ok"] and result["page"].startswith("# Data validation: passed")
    assert (tmp_path / "v" / "data_docs" / "index.html").is_file() and (tmp_path / "v" / "validation.json").is_file()
    logged = tracking.list_artifacts(uri, run_id, "validation/seed-1")
    assert {"validation/seed-1/validation.json", "validation/seed-1/data_docs.html",
            "validation/seed-1/data_docs"} <= set(logged)
    assert "validation/seed-1/data_docs/index.html" in tracking.list_artifacts(uri, run_id,
                                                                              "validation/seed-1/data_docs")
    page = result["html"]
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page == (tmp_path / "v" / "data_docs.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<link" not in page and "<iframe" not in page
    assert not re.findall(r'(?:src|href)="(?!#|data:)', page), "the page refers to another file"
    assert all(f"nli_{s}" in page for s in ("train", "validation", "test", "challenge", "challenge_dev"))
    anchors = set(re.findall(r'href="#([^"]+)"', page))
    assert anchors and anchors <= set(re.findall(r'id="([^"]+)"', page))
