"""Great Expectations validation: passes on generated data, names file + rule on corruption."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from data_fixtures import shared_file, smoke
from debiaskd.core.errors import DebiaskdError
from debiaskd.data.build import generate_dataset
from debiaskd.data.schema import ImageSplit
from debiaskd.data.store import read_dataset, write_dataset
from debiaskd.data.validate import validate_dataset, validate_spec


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
    import shutil

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
