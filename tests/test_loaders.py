"""Loaders: every format into one schema, and clear refusals of bad files."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from data_fixtures import shared_file, smoke
from debiaskd.core.errors import DebiaskdError
from debiaskd.data.build import build_dataset
from debiaskd.data.loaders import hub_reachable, load_spec, parse_spec
from debiaskd.data.schema import NLI_COLUMNS, VISION_COLUMNS
from debiaskd.data.store import read_dataset

SHARED_HEADER = "index\tpremise\thypothesis\tgold_label\tnumber of correct responses (out of 100)\n"


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def _idx(path, arr: np.ndarray, magic_type: int = 0x08, gz: bool = True, cut: int = 0):
    header = bytes([0, 0, magic_type, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data[: len(data) - cut] if cut else data)
    return path


@pytest.fixture
def mnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "mnist"
    d.mkdir()
    _idx(d / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (60, 28, 28)))
    _idx(d / "t10k-labels-idx1-ubyte.gz", np.arange(60) % 10)
    return d


def test_mnli_formats_give_the_schema(tmp_path):
    cfg = smoke()
    shared = _write(tmp_path / "dev.tsv", SHARED_HEADER
                    + "0\tThe cat slept.\tThe cat did not sleep.\tcontradiction\t97\n"
                    "1\tA big dog ran in the park.\tA dog ran.\tentailment\t12\n2\tX is here.\tY is there.\t-\t50\n")
    glue = _write(tmp_path / "glue.tsv", "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tgold_label\n"
                  "0\t1\t1n\tfiction\tThe man ate.\tThe man ate food.\tneutral\n")
    plain = _write(tmp_path / "plain.tsv", "premise\thypothesis\tgold_label\nA b.\tA b c.\tneutral\n")
    jsonl = _write(tmp_path / "m.jsonl", json.dumps({"sentence1": "A man sings.", "sentence2": "Nobody sings.",
                                                    "gold_label": "contradiction", "pairID": "7"}) + "\n")
    df = load_spec(f"mnli:{shared}", "nli", cfg)
    assert list(df.columns[: len(NLI_COLUMNS)]) == list(NLI_COLUMNS)
    assert len(df) == 2 and list(df.bert_correct) == [97, 12]  # "-" (no gold label) dropped
    assert list(df.heuristic) == ["negation", "lexical_overlap"]
    assert list(df.group) == ["negation/contradiction", "lexical_overlap/entailment"]
    assert list(df.bias_aligned) == [True, True]
    assert load_spec(f"mnli:{glue}", "nli", cfg).iloc[0].pair_id == "1n"
    assert load_spec(str(plain), "nli", cfg).iloc[0].label == "neutral"  # bare path, format guessed
    assert load_spec(f"mnli:{jsonl}", "nli", cfg).iloc[0].heuristic == "negation"
    assert parse_spec(str(shared)) == ("mnli", str(shared))


@pytest.mark.parametrize("content,rule", [
    (SHARED_HEADER + "0\ta\tb\tmaybe\t3\n", "label set"),
    ("premise\tgold_label\nA b.\tneutral\n", "required columns"),
    ("", "non-empty file"),
    (SHARED_HEADER + "0\ta\tb\tneutral\t300\n", "bert_correct range"),
])
def test_bad_nli_files_are_refused_with_file_and_rule(tmp_path, content, rule):
    path = _write(tmp_path / "bad.tsv", content)
    with pytest.raises(DebiaskdError) as err:
        load_spec(f"mnli:{path}", "nli", smoke())
    assert err.value.rule == rule and str(path) in str(err.value)


def test_non_utf8_is_refused(tmp_path):
    path = tmp_path / "latin.tsv"
    path.write_bytes(SHARED_HEADER.encode() + "0\tcaf\xe9\tb\tneutral\t3\n".encode("latin-1"))
    with pytest.raises(DebiaskdError, match="not UTF-8") as err:
        load_spec(f"mnli:{path}", "nli", smoke())
    assert err.value.rule == "utf-8 encoding" and err.value.examples


def test_sick_and_glue_rte(tmp_path):
    sick = _write(tmp_path / "SICK.txt", "pair_ID\tsentence_A\tsentence_B\tentailment_label\tSemEval_set\n"
                  "1\tA man is singing\tA man is not singing\tCONTRADICTION\tTRAIN\n"
                  "2\tA dog runs\tAn animal runs\tENTAILMENT\tTEST\n")
    df = load_spec(f"sick:{sick}", "nli", smoke())
    assert list(df.label) == ["contradiction", "entailment"] and list(df.sick_set) == ["TRAIN", "TEST"]
    assert len(load_spec(f"sick:{sick}#TEST", "nli", smoke())) == 1
    rte = _write(tmp_path / "rte.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA b.\tA.\tnot_entailment\n")
    assert load_spec(f"glue-tsv:{rte}", "nli", smoke()).label.tolist() == ["non-entailment"]


def test_unknown_spec_and_wrong_task(tmp_path):
    with pytest.raises(DebiaskdError, match="neither a known scheme"):
        parse_spec("nosuch:thing")
    with pytest.raises(DebiaskdError, match="vision format"):
        load_spec("colored-digits:", "nli", smoke())
    with pytest.raises(DebiaskdError, match="no split"):
        load_spec("generated:nosplit", "nli", smoke())


def test_hf_offline_fails_fast_and_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reachable()[0] is False
    with pytest.raises(DebiaskdError, match="not reachable") as err:
        load_spec("hf:nyu-mll/multi_nli::train", "nli", smoke())
    assert err.value.rule == "hf reachable"


def test_mnist_idx_colours_real_digits(mnist_dir):
    cfg = smoke("vision", "vision_data.color_strength=1.0")
    train = load_spec(f"mnist-idx:{mnist_dir}", "vision", cfg, split="train")
    assert train.images.shape == (60, 3, 8, 8) and train.images.dtype == np.uint8
    assert list(train.frame.columns) == list(VISION_COLUMNS) and train.frame.bias_aligned.all()
    test = load_spec(f"mnist-idx:{mnist_dir}", "vision", cfg, split="test")
    assert test.frame.bias_aligned.mean() < 0.5
    ch = load_spec(str(mnist_dir), "vision", cfg, split="challenge")  # bare dir → mnist-idx
    assert not ch.frame.bias_aligned.any()


def test_truncated_gzip_is_refused(mnist_dir):
    _idx(mnist_dir / "t10k-images-idx3-ubyte.gz", np.zeros((60, 28, 28)), cut=40)
    with pytest.raises(DebiaskdError) as err:
        load_spec(f"mnist-idx:{mnist_dir}", "vision", smoke("vision"))
    assert err.value.rule == "gzip integrity" and "t10k-images" in str(err.value)


def test_idx_size_mismatch_is_refused(mnist_dir):
    raw = gzip.decompress((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    (mnist_dir / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DebiaskdError) as err:
        load_spec(f"mnist-idx:{mnist_dir}", "vision", smoke("vision"))
    assert err.value.rule == "idx size"


def _waterbirds(tmp_path, filenames):
    root = tmp_path / "wb"
    (root / "imgs").mkdir(parents=True)
    rows = []
    for i, fn in enumerate(filenames):
        y, place, split = i % 2, (i // 2) % 2, [0, 1, 2][i % 3]
        if not fn.startswith(".."):
            Image.fromarray(np.full((20, 30, 3), 40 * i % 255, dtype=np.uint8)).save(root / fn)
        rows.append({"img_filename": fn, "y": y, "split": split, "place": place})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def test_waterbirds_layout(tmp_path):
    root = _waterbirds(tmp_path, [f"imgs/{i}.png" for i in range(12)])
    cfg = smoke("vision")
    test = load_spec(f"waterbirds:{root}", "vision", cfg, split="test")
    assert test.images.shape == (4, 3, 8, 8)
    assert set(test.frame.group) <= {"0/land", "0/water", "1/land", "1/water"}
    assert test.class_names == ("landbird", "waterbird")
    ch = load_spec(str(root), "vision", cfg, split="challenge")
    assert len(ch) and not ch.frame.bias_aligned.any()


def test_waterbirds_path_traversal_is_refused(tmp_path):
    outside = tmp_path / "secret.png"
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(outside)
    root = _waterbirds(tmp_path, ["../secret.png", "imgs/1.png", "imgs/2.png"])
    with pytest.raises(DebiaskdError) as err:
        load_spec(f"waterbirds:{root}", "vision", smoke("vision"), split="train")
    assert err.value.rule == "path traversal"


def test_build_dataset_holds_out_test_from_a_real_train_file(tmp_path):
    rows = [f"{i}\tThe person number {i} walked home.\tA person walked.\t{lab}\t50"
            for i, lab in zip(range(90), ["entailment", "neutral", "contradiction"] * 30, strict=True)]
    path = _write(tmp_path / "train.tsv", SHARED_HEADER + "\n".join(rows) + "\n")
    cfg = smoke("nli", f"nli_data.train=mnli:{path}", "nli_data.holdout_fraction=0.2")
    ds = read_dataset(build_dataset(cfg, tmp_path / "out"))
    sizes = {k: len(v) for k, v in ds.splits.items()}
    assert sizes["test"] == 18 and sizes["validation"] == 18 and sizes["train"] == 54
    assert not set(ds.splits["train"].pair_id) & set(ds.splits["test"].pair_id)
    assert ds.splits["challenge"].heuristic.isin(["lexical_overlap", "negation"]).any()  # embedded challenge


def test_build_dataset_on_real_mnist_colours_each_split(tmp_path, mnist_dir):
    cfg = smoke("vision", f"vision_data.train=mnist-idx:{mnist_dir}", "vision_data.color_strength=1.0")
    ds = read_dataset(build_dataset(cfg, tmp_path / "v", task="vision"))
    assert ds.splits["train"].frame.bias_aligned.all()
    assert ds.splits["test"].frame.bias_aligned.mean() < 0.5
    assert not ds.splits["challenge"].frame.bias_aligned.any()
    assert not set(ds.splits["train"].frame.image_id) & set(ds.splits["test"].frame.image_id)


@pytest.mark.shared_data
def test_real_mnli_dev_and_sick_load():
    cfg = smoke()
    mnli = load_spec(str(shared_file("nli", "mnli_dev_matched_bert_difficulty.tsv")), "nli", cfg)
    assert len(mnli) == 9815 and mnli.label.value_counts()["entailment"] == 3479
    assert mnli.bert_correct.between(0, 100).all()
    sick = load_spec(f"sick:{shared_file('nli', 'SICK.txt')}", "nli", cfg)
    assert len(sick) == 9840 and sick.label.value_counts()["contradiction"] == 1424


@pytest.mark.shared_data
def test_real_mnist_idx_loads():
    d = shared_file("vision")
    split = load_spec(f"mnist-idx:{d}", "vision", smoke("vision"), split="test")
    assert len(split) == 10000 and split.images.shape[1:] == (3, 8, 8)
