"""One loader per data ``SPEC`` scheme, all returning the schema of :mod:`debiaskd.data.schema`.

Schemes: ``generated:NAME`` (NLI: ``train``, ``validation``, ``test``, ``challenge``,
``challenge_dev``; the embedded rows carry the optional ``construction`` columns),
``dataset:DIR[:SPLIT]`` (a folder written by
:func:`debiaskd.data.store.write_dataset`), ``hans:PATH``, ``mnli:PATH`` (jsonl, GLUE tsv, plain
``premise/hypothesis/gold_label`` tsv, and the ``index premise hypothesis gold_label "number of
correct responses (out of 100)"`` tsv whose count is kept as ``bert_correct``), ``sick:PATH[#SET]``,
``glue-tsv:PATH``, ``hf:NAME[:CONFIG][:SPLIT]``, ``colored-digits:[key=value,...]``,
``mnist-idx:DIR`` and ``waterbirds:DIR``. A bare path is accepted when its format can be told.

Files are read as bytes and checked: not empty, UTF-8, the columns the format needs, labels in
the label set (MultiNLI's ``-`` = "no gold label" rows are dropped, as is customary), gzip
complete. Nothing is unpickled (``np.load(allow_pickle=False)``); Waterbirds image paths may
not leave the data directory. Every problem is a :class:`DebiaskdError` naming file and rule.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import socket
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from debiaskd.core.config import StudyConfig, VisionDataConfig
from debiaskd.core.errors import DebiaskdError, short_repr
from debiaskd.core.paths import describe, require_dir, require_file
from debiaskd.data.generate_nli import bias_aligned, heuristic_of
from debiaskd.data.generate_vision import colorize, conflicting, make_split
from debiaskd.data.schema import (
    BIAS_TYPES,
    NLI_COLUMNS,
    NLI_LABELS,
    NO_HEURISTIC,
    TWO_WAY_LABELS,
    VISION_COLUMNS,
    WATERBIRDS_PLACES,
    ImageSplit,
    nli_group,
)
from debiaskd.data.store import read_dataset
from debiaskd.tasks import Task, get_task, task_of_scheme
from debiaskd.tasks.vision import generated_from_json as _generated_vision

SCHEMES: tuple[str, ...] = ("generated", "dataset", "hans", "mnli", "sick", "glue-tsv", "hf",
                            "colored-digits", "mnist-idx", "waterbirds")
NLI_SCHEMES = get_task("nli").schemes
VISION_SCHEMES = get_task("vision").schemes
_LABEL_ALIASES = {
    "entailment": "entailment", "neutral": "neutral", "contradiction": "contradiction",
    "non-entailment": "non-entailment", "not_entailment": "non-entailment", "non_entailment": "non-entailment",
}
MISSING_GOLD = "-"
MAX_DECOMPRESSED_BYTES = 1 << 30  # 1 GiB: MNIST's largest file is 47 MB uncompressed
MAX_IMAGE_PIXELS = 50_000_000  # per Waterbirds image (the real ones are well under 1 megapixel)
_SPLIT_SEED_OFFSET = {"train": 0, "validation": 1, "test": 2, "challenge": 2}


# --------------------------------------------------------------------------- specs
def parse_spec(spec: str) -> tuple[str, str]:
    """``scheme:argument`` → (scheme, argument); a bare path gets its scheme from the file."""
    if not isinstance(spec, str) or not spec.strip():
        raise DebiaskdError("empty data spec", rule="spec")
    spec = spec.strip()
    head, sep, rest = spec.partition(":")
    if sep and head in SCHEMES:
        return head, rest
    path = Path(spec)
    if path.exists():
        return _guess_scheme(path), spec
    state = describe(path)
    if state != "does not exist":  # a broken symbolic link, a symlink loop, a path under a file: say so
        raise DebiaskdError(f"this path {state}; expected a data file or folder", file=spec, rule="spec")
    raise DebiaskdError(f"'{spec}' is neither a known scheme ({', '.join(SCHEMES)}) nor an existing path",
                        file=spec, rule="spec")


def _guess_scheme(path: Path) -> str:
    if path.is_dir():
        try:
            names = {p.name for p in path.iterdir()}
        except OSError as exc:
            raise DebiaskdError(f"cannot list this folder ({exc.strerror})", file=str(path), rule="spec") from exc
        if "manifest.json" in names:
            return "dataset"
        if "metadata.csv" in names:
            return "waterbirds"
        if any("idx3-ubyte" in n for n in names):
            return "mnist-idx"
        raise DebiaskdError("cannot tell the format of this directory (no manifest.json, metadata.csv "
                            "or *idx3-ubyte files)", file=str(path), rule="spec")
    head = _read_text(path).split("\n", 1)[0]
    cols = head.split("\t")
    if head.lstrip().startswith("{"):
        return "mnli"
    if {"sentence1", "sentence2", "heuristic", "subcase"} <= set(cols):
        return "hans"
    if {"pair_ID", "sentence_A", "sentence_B"} <= set(cols):
        return "sick"
    if ({"premise", "hypothesis"} <= set(cols)) or ({"sentence1", "sentence2"} <= set(cols)):
        return "mnli"
    raise DebiaskdError("cannot tell the format of this file from its header", file=str(path),
                        rule="spec", examples=[head[:200]])


# ------------------------------------------------------------------------ file io
def _read_bytes(path: Path) -> bytes:
    require_file(path, "a data file", "file exists")
    try:
        if path.suffix == ".gz":
            try:
                with gzip.open(path, "rb") as fh:  # streamed, and capped: a small .gz may expand to terabytes
                    data = fh.read(MAX_DECOMPRESSED_BYTES + 1)
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise DebiaskdError(f"gzip stream is truncated or corrupt ({exc})", file=str(path),
                                    rule="gzip integrity") from exc
            if len(data) > MAX_DECOMPRESSED_BYTES:
                raise DebiaskdError(f"decompresses to more than {MAX_DECOMPRESSED_BYTES >> 20} MiB (a decompression "
                                    "bomb?)", file=str(path), rule="decompressed size")
        else:
            data = path.read_bytes()
    except OSError as exc:
        raise DebiaskdError(f"cannot read this file ({exc.strerror or exc})", file=str(path),
                            rule="readable file") from exc
    if not data.strip():
        raise DebiaskdError("file is empty", file=str(path), rule="non-empty file")
    return data


def _read_text(path: Path) -> str:
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DebiaskdError(f"not UTF-8 text (invalid byte at offset {exc.start}, line {line})",
                            file=str(path), rule="utf-8 encoding",
                            examples=[data.splitlines()[line - 1][:120]]) from exc
    return text.lstrip("\ufeff")


def _read_tsv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    text = _read_text(path)
    _refuse_nul(text, path)
    if text.lstrip()[:1] == "[":  # a JSON array read as a table would be "a header but no rows"
        raise DebiaskdError("this file holds a JSON array (it starts with '['); expected JSON Lines (one JSON "
                            "object per line) or tab-separated text with a header row", file=str(path),
                            rule="file format")
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))
    except csv.Error as exc:  # a field over the csv module's size limit, …
        raise DebiaskdError(f"not a readable tab-separated file ({str(exc)[:200]})", file=str(path),
                            rule="tsv") from exc
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    header, body = rows[0], rows[1:]
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise DebiaskdError(f"duplicate column name(s) {dupes[:5]} in the header", file=str(path),
                            rule="unique columns")
    missing = [c for c in required if c not in header]
    if missing:
        raise DebiaskdError(f"missing column(s) {missing}; header is {header[:12]}", file=str(path),
                            rule="required columns")
    if not body:
        raise DebiaskdError("file has a header but no rows", file=str(path), rule="non-empty file")
    width = len(header)
    bad = [i + 2 for i, r in enumerate(body) if len(r) < width]
    if bad:
        raise DebiaskdError(f"{len(bad)} row(s) have fewer than {width} tab-separated fields",
                            file=str(path), rule="tsv row width",
                            examples=[f"line {i}: {body[i - 2][:4]}" for i in bad[:5]])
    extra = [i + 2 for i, r in enumerate(body) if any(c.strip() for c in r[width:])]
    if extra:
        raise DebiaskdError(f"{len(extra)} row(s) have more tab-separated fields than the {width} columns of the "
                            "header (a tab inside a text?)", file=str(path), rule="tsv row width",
                            examples=[f"line {i}: {body[i - 2][width:width + 2]}" for i in extra[:5]])
    return pd.DataFrame([r[:width] for r in body], columns=header, dtype=object)


def _refuse_nul(text: str, path: Path) -> None:
    at = text.find("\x00")
    if at >= 0:
        line = text.count("\n", 0, at) + 1
        raise DebiaskdError(f"NUL byte in a text file (line {line}): a binary or corrupt file?", file=str(path),
                            rule="text file")


def _read_jsonl(path: Path) -> pd.DataFrame:
    records = []
    for i, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DebiaskdError(f"line {i} is not valid JSON ({exc.msg})", file=str(path), rule="jsonl",
                                examples=[line[:200]]) from exc
        except RecursionError as exc:
            raise DebiaskdError(f"line {i} is JSON nested too deeply", file=str(path), rule="jsonl") from exc
        if not isinstance(rec, dict):
            raise DebiaskdError(f"line {i} is not a JSON object", file=str(path), rule="jsonl")
        records.append(rec)
    return pd.DataFrame(records)


# ------------------------------------------------------------------------ NLI frames
def _normalise_labels(raw: pd.Series, file_label: str, allowed: tuple[str, ...]) -> pd.Series:
    labels = raw.astype(str).str.strip().str.lower().map(lambda s: _LABEL_ALIASES.get(s, s))
    bad = ~labels.isin(allowed)
    if bad.any():
        shown = [f"row {i}: label {raw.iloc[i]!r}" for i in np.flatnonzero(bad.to_numpy())[:5]]
        raise DebiaskdError(f"{int(bad.sum())} row(s) have a label outside {list(allowed)}", file=file_label,
                            rule="label set", examples=shown)
    return labels


def _require_text(series: pd.Series, column: str, file_label: str) -> None:
    """Sentences and labels are strings (or missing): an object, a list or a number is refused."""
    bad = [i for i, v in enumerate(series) if not (isinstance(v, str) or v is None
                                                      or (isinstance(v, float) and np.isnan(v)))]
    if bad:
        raise DebiaskdError(f"{len(bad)} row(s) hold a {type(series.iloc[bad[0]]).__name__}, not text, in "
                            f"column {column}", file=file_label, rule=f"text column: {column}",
                            examples=[f"row {i + 1}: {column} = {short_repr(series.iloc[i], 80)}" for i in bad[:3]])


def nli_frame(
    premise: pd.Series, hypothesis: pd.Series, labels: pd.Series, ids: pd.Series, file_label: str,
    *, allowed: tuple[str, ...] = NLI_LABELS, heuristic: pd.Series | None = None,
    subcase: pd.Series | None = None, template: pd.Series | None = None,
    extra: dict[str, pd.Series] | None = None,
) -> pd.DataFrame:
    """Assemble the NLI schema; heuristics come from the bias features when not given."""
    keep = labels.astype(str).str.strip() != MISSING_GOLD
    def sel(s: pd.Series | None) -> pd.Series | None:
        return None if s is None else s[keep].reset_index(drop=True)

    premise, hypothesis, labels, ids = sel(premise), sel(hypothesis), sel(labels), sel(ids)
    if len(labels) == 0:
        raise DebiaskdError("no rows with a gold label", file=file_label, rule="non-empty file")
    for column, series in (("premise", premise), ("hypothesis", hypothesis), ("label", labels)):
        _require_text(series, column, file_label)
    lab = _normalise_labels(labels, file_label, allowed)
    prem = premise.fillna("").astype(str).str.strip()
    hyp = hypothesis.fillna("").astype(str).str.strip()
    if heuristic is None:
        heur = pd.Series([heuristic_of(p, h) for p, h in zip(prem, hyp, strict=True)], dtype=object)
    else:
        heur = sel(heuristic).astype(str).str.strip()
        bad = ~heur.isin((*BIAS_TYPES, NO_HEURISTIC))
        if bad.any():
            raise DebiaskdError(f"unknown heuristic(s) {sorted(set(heur[bad]))[:5]}", file=file_label,
                                rule="heuristic set")
    df = pd.DataFrame({
        "pair_id": sel(ids).astype(str).to_numpy(),
        "premise": prem.to_numpy(), "hypothesis": hyp.to_numpy(), "label": lab.to_numpy(),
        "heuristic": heur.to_numpy(),
        "subcase": (sel(subcase).astype(str).to_numpy() if subcase is not None else ""),
        "template": (sel(template).astype(str).to_numpy() if template is not None else ""),
    })
    df["bias_aligned"] = np.array([bias_aligned(h, lab_) for h, lab_ in zip(df.heuristic, df.label, strict=True)],
                                  dtype=bool)
    df["group"] = [nli_group(h, lab_) for h, lab_ in zip(df.heuristic, df.label, strict=True)]
    df = df[list(NLI_COLUMNS)]
    for name, col in (extra or {}).items():
        df[name] = sel(col).to_numpy()
    return df


def load_hans(path: Path) -> pd.DataFrame:
    df = _read_tsv(path, ("gold_label", "sentence1", "sentence2", "pairID", "heuristic", "subcase"))
    return nli_frame(df["sentence1"], df["sentence2"], df["gold_label"], df["pairID"], str(path),
                     allowed=TWO_WAY_LABELS, heuristic=df["heuristic"], subcase=df["subcase"],
                     template=df.get("template"))


def _mnli_from_frame(df: pd.DataFrame, file_label: str) -> pd.DataFrame:
    cols = set(df.columns)
    if {"premise", "hypothesis"} <= cols:
        prem, hyp = df["premise"], df["hypothesis"]
    elif {"sentence1", "sentence2"} <= cols:
        prem, hyp = df["sentence1"], df["sentence2"]
    else:
        raise DebiaskdError(f"needs premise/hypothesis or sentence1/sentence2 columns; has {sorted(cols)[:12]}",
                            file=file_label, rule="required columns")
    label_col = next((c for c in ("gold_label", "label") if c in cols), None)
    if label_col is None:
        raise DebiaskdError("needs a gold_label or label column", file=file_label, rule="required columns")
    labels = df[label_col]
    if pd.api.types.is_integer_dtype(labels) or labels.astype(str).str.fullmatch(r"-?\d").all():
        ints = labels.astype(int)
        bad = ~ints.isin([-1, 0, 1, 2])
        if bad.any():
            raise DebiaskdError("integer labels must be 0/1/2 (entailment/neutral/contradiction)",
                                file=file_label, rule="label set",
                                examples=[f"row {i}: {labels.iloc[i]!r}" for i in np.flatnonzero(bad)[:5]])
        labels = ints.map({-1: MISSING_GOLD, 0: "entailment", 1: "neutral", 2: "contradiction"})
    id_col = next((c for c in ("pair_id", "pairID", "index", "idx", "id") if c in cols), None)
    ids = df[id_col].astype(str) if id_col else pd.Series([str(i) for i in range(len(df))])
    extra = {}
    bert_col = next((c for c in df.columns if str(c).startswith("number of correct responses")), None)
    if bert_col is not None:
        counts = pd.to_numeric(df[bert_col], errors="coerce")
        bad = counts.isna() | (counts < 0) | (counts > 100)
        if bad.any():
            raise DebiaskdError("correct-response counts must be integers in 0..100", file=file_label,
                                rule="bert_correct range",
                                examples=[f"row {i}: {df[bert_col].iloc[i]!r}" for i in np.flatnonzero(bad)[:5]])
        extra["bert_correct"] = counts.astype(int)
    if "genre" in cols:
        extra["genre"] = df["genre"].astype(str)
    return nli_frame(prem, hyp, labels, ids, file_label, extra=extra)


def load_mnli(path: Path) -> pd.DataFrame:
    head = _read_text(path).lstrip()[:1]
    df = _read_jsonl(path) if head == "{" else _read_tsv(path, ())
    return _mnli_from_frame(df, str(path))


def load_glue_tsv(path: Path) -> pd.DataFrame:
    df = _read_tsv(path, ("sentence1", "sentence2"))
    label_col = next((c for c in ("gold_label", "label") if c in df.columns), None)
    if label_col is None:
        raise DebiaskdError("needs a gold_label or label column", file=str(path), rule="required columns")
    id_col = next((c for c in ("pairID", "index", "idx") if c in df.columns), None)
    ids = df[id_col] if id_col else pd.Series([str(i) for i in range(len(df))])
    two_way = df[label_col].astype(str).str.strip().str.lower().isin(["not_entailment", "non-entailment"]).any()
    return nli_frame(df["sentence1"], df["sentence2"], df[label_col], ids, str(path),
                     allowed=TWO_WAY_LABELS if two_way else NLI_LABELS)


def load_sick(arg: str) -> pd.DataFrame:
    path_str, _, subset = arg.partition("#")
    path = Path(path_str)
    df = _read_tsv(path, ("pair_ID", "sentence_A", "sentence_B", "entailment_label"))
    if subset:
        if "SemEval_set" not in df.columns:
            raise DebiaskdError("a #SET was asked for but the file has no SemEval_set column", file=str(path),
                                rule="required columns")
        df = df[df["SemEval_set"].str.upper() == subset.upper()].reset_index(drop=True)
        if df.empty:
            raise DebiaskdError(f"no rows with SemEval_set == {subset!r}", file=str(path), rule="non-empty file")
    extra = {"sick_set": df["SemEval_set"]} if "SemEval_set" in df.columns else {}
    return nli_frame(df["sentence_A"], df["sentence_B"], df["entailment_label"], df["pair_ID"], str(path),
                     extra=extra)


def hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Quick check (env flags, then one TCP connect) that the Hugging Face hub can be reached."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return False, f"{var} is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    hostname, _, port = host.partition(":")
    try:
        with socket.create_connection((hostname, int(port or 443)), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, f"cannot connect to {host} ({exc.__class__.__name__})"


def load_hf(arg: str, split: str) -> pd.DataFrame:
    parts = arg.split(":")
    name = parts[0]
    config = parts[1] if len(parts) > 1 and parts[1] else None
    hf_split = parts[2] if len(parts) > 2 and parts[2] else split
    ok, why = hub_reachable()
    if not ok:
        raise DebiaskdError(f"the Hugging Face hub is not reachable ({why}); download the data and use a "
                            "file spec (mnli:PATH, hans:PATH, ...) instead", file=f"hf:{arg}", rule="hf reachable")
    try:
        import datasets  # Hugging Face datasets: slow (~1.5 s), only hf: specs need it

        ds = datasets.load_dataset(name, config, split=hf_split)
    except Exception as exc:  # the hub's errors are many; all mean "could not load"
        raise DebiaskdError(f"could not load from the hub: {exc}", file=f"hf:{arg}", rule="hf load") from exc
    df = ds.to_pandas()
    label_file = f"hf:{arg}"
    if {"heuristic", "subcase"} <= set(df.columns):  # HANS
        labels = df["label"].map({0: "entailment", 1: "non-entailment"})
        ids = pd.Series([f"{hf_split}-{i}" for i in range(len(df))])
        return nli_frame(df["premise"], df["hypothesis"], labels, ids, label_file, allowed=TWO_WAY_LABELS,
                         heuristic=df["heuristic"], subcase=df["subcase"], template=df.get("template"))
    df = df.rename(columns={"idx": "hf_idx"})
    df["pair_id"] = [f"{hf_split}-{i}" for i in range(len(df))]
    return _mnli_from_frame(df, label_file)


# ------------------------------------------------------------------------ vision
def _parse_kv(arg: str, file_label: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (a.strip() for a in arg.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise DebiaskdError(f"'{item}' is not key=value", file=file_label, rule="spec arguments")
        out[key.strip()] = value.strip()
    return out


def load_colored_digits(arg: str, cfg: StudyConfig, split: str) -> ImageSplit:
    kv = _parse_kv(arg, f"colored-digits:{arg}")
    name = kv.pop("split", split)
    data = cfg.vision_data.model_dump()
    data.update({k: v for k, v in kv.items()})
    try:
        vcfg = VisionDataConfig.model_validate(data)
    except Exception as exc:
        raise DebiaskdError(f"bad colored-digits arguments: {exc}", file=f"colored-digits:{arg}",
                            rule="spec arguments") from exc
    return _generated_vision(vcfg.model_dump_json())[name]


def _read_idx(path: Path, magic: int) -> np.ndarray:
    data = _read_bytes(path)
    if len(data) < 8 or int.from_bytes(data[:4], "big") != magic:
        raise DebiaskdError(f"not an IDX file (magic {data[:4].hex()} != {magic:08x})", file=str(path),
                            rule="idx magic")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DebiaskdError(f"IDX header is truncated ({len(data)} bytes)", file=str(path), rule="idx size")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if dims[0] == 0:
        raise DebiaskdError("IDX file holds no items (its count is 0)", file=str(path), rule="non-empty file")
    if any(d == 0 for d in dims[1:]):
        raise DebiaskdError(f"IDX items have a zero dimension ({'x'.join(map(str, dims[1:]))})", file=str(path),
                            rule="idx shape")
    expected = math.prod(dims)
    if len(data) - header != expected:
        raise DebiaskdError(f"IDX payload has {len(data) - header} bytes, header promises {expected} "
                            "(truncated?)", file=str(path), rule="idx size")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find(directory: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for suffix in ("", ".gz"):
            p = directory / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None


def load_mnist_idx(arg: str, cfg: StudyConfig, split: str) -> ImageSplit:
    directory = Path(arg)
    require_dir(directory, "a folder of MNIST idx files", "file exists")
    prefixes = ("train", "t10k") if split == "train" else ("t10k", "train")
    for prefix in prefixes:
        img = _find(directory, (f"{prefix}-images-idx3-ubyte", f"mnist-{prefix}-images-idx3-ubyte",
                                f"{prefix}-images.idx3-ubyte"))
        lab = _find(directory, (f"{prefix}-labels-idx1-ubyte", f"mnist-{prefix}-labels-idx1-ubyte",
                                f"{prefix}-labels.idx1-ubyte"))
        if img and lab:
            break
    else:
        raise DebiaskdError("no *-images-idx3-ubyte[.gz] + *-labels-idx1-ubyte[.gz] pair found",
                            file=str(directory), rule="mnist files")
    images = _read_idx(img, 0x00000803)
    labels = _read_idx(lab, 0x00000801).astype(np.int64)
    if len(images) != len(labels):
        raise DebiaskdError(f"{len(images)} images but {len(labels)} labels", file=str(lab), rule="idx count")
    if labels.max() > 9:
        raise DebiaskdError("labels must be 0..9", file=str(lab), rule="label set")
    vcfg = cfg.vision_data
    rng = np.random.default_rng(np.random.PCG64([vcfg.seed, _SPLIT_SEED_OFFSET.get(split, 3)]))
    strength = vcfg.color_strength if split == "train" else 0.0
    colored, colors = colorize(images, labels, strength, rng, vcfg.image_size)
    out = make_split(colored, labels, colors, f"mnist-{prefix}")
    return conflicting(out, "mnist-challenge") if split == "challenge" else out


def load_waterbirds(arg: str, cfg: StudyConfig, split: str) -> ImageSplit:
    root = Path(arg)
    meta_path = root / "metadata.csv"
    text = _read_text(meta_path)
    try:
        meta = pd.read_csv(io.StringIO(text), dtype=str)
    except pd.errors.ParserError as exc:
        raise DebiaskdError(f"not a CSV file ({exc})", file=str(meta_path), rule="csv") from exc
    missing = [c for c in ("img_filename", "y", "split", "place") if c not in meta.columns]
    if missing:
        raise DebiaskdError(f"missing column(s) {missing}", file=str(meta_path), rule="required columns")
    for col, allowed in (("y", {"0", "1"}), ("place", {"0", "1"}), ("split", {"0", "1", "2"})):
        bad = ~meta[col].str.strip().isin(allowed)
        if bad.any():
            raise DebiaskdError(f"column {col} must be in {sorted(allowed)}", file=str(meta_path),
                                rule="label set", examples=meta[bad].head(5).to_dict("records"))
    code = {"train": "0", "validation": "1", "test": "2", "challenge": "2"}.get(split, "2")
    rows = meta[meta["split"].str.strip() == code].reset_index(drop=True)
    if rows.empty:
        raise DebiaskdError(f"no rows with split == {code} ({split})", file=str(meta_path), rule="non-empty split")
    names = rows["img_filename"]
    empty = [i for i, fn in enumerate(names) if not isinstance(fn, str) or not fn.strip()]
    if empty:
        raise DebiaskdError(f"{len(empty)} row(s) have an empty img_filename", file=str(meta_path),
                            rule="image file names", examples=[rows.iloc[i].to_dict() for i in empty[:3]])
    size = cfg.vision_data.image_size
    base = root.resolve()
    images = np.empty((len(rows), 3, size, size), dtype=np.uint8)
    for i, fn in enumerate(rows["img_filename"]):
        target = (root / fn).resolve()
        if not target.is_relative_to(base):
            raise DebiaskdError(f"image path {fn!r} leaves the data directory", file=str(meta_path),
                                rule="path traversal")
        try:
            with Image.open(target) as im:
                if im.width < 1 or im.height < 1 or im.width * im.height > MAX_IMAGE_PIXELS:
                    raise DebiaskdError(f"image is {im.width}x{im.height} pixels; expected 1 to {MAX_IMAGE_PIXELS} "
                                        "pixels", file=str(target), rule="image size")
                arr = np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise DebiaskdError(f"cannot read image ({exc.__class__.__name__})", file=str(target),
                                rule="image readable") from exc
        images[i] = arr.transpose(2, 0, 1)
    y = rows["y"].astype(int).to_numpy()
    place = rows["place"].astype(int).to_numpy()
    frame = pd.DataFrame({
        "image_id": rows["img_filename"].astype(str).to_numpy(), "label": y,
        "color": [WATERBIRDS_PLACES[p] for p in place], "bias_aligned": y == place,
        "group": [f"{a}/{WATERBIRDS_PLACES[p]}" for a, p in zip(y, place, strict=True)],
    }, columns=list(VISION_COLUMNS))
    out = ImageSplit(images, frame, class_names=("landbird", "waterbird"), group_names=WATERBIRDS_PLACES)
    if split == "challenge":
        out = out.subset(np.flatnonzero(~frame["bias_aligned"].to_numpy()))
    return out


# ---------------------------------------------------------------------- generated
def _copy(split: pd.DataFrame | ImageSplit) -> pd.DataFrame | ImageSplit:
    if isinstance(split, ImageSplit):
        return ImageSplit(split.images.copy(), split.frame.copy(), split.class_names, split.group_names)
    return split.copy()


def load_spec(spec: str, task: str | Task, cfg: StudyConfig, split: str = "train") -> pd.DataFrame | ImageSplit:
    """Load one split given by ``spec`` for ``task`` ("nli" or "vision") in the common schema."""
    scheme, arg = parse_spec(spec)
    kind = get_task(task)
    owner = task_of_scheme(scheme)
    if owner is not None and owner is not kind:
        raise DebiaskdError(f"'{scheme}:' is {owner.format_noun} but the task is {kind.name}", file=spec,
                            rule="spec task")
    if scheme == "generated":
        name = arg or split
        data = kind.generated(cfg)
        if name not in data:
            raise DebiaskdError(f"the embedded benchmark has no split '{name}' (has {list(data)})", file=spec,
                                rule="spec")
        return _copy(data[name])
    if scheme == "dataset":
        root, _, name = arg.partition(":") if not Path(arg).exists() else (arg, "", "")
        ds = read_dataset(root)
        name = name or split
        if ds.task != kind.name:
            raise DebiaskdError(f"dataset task is {ds.task}, not {kind.name}", file=root, rule="spec task")
        if name not in ds.splits:
            raise DebiaskdError(f"dataset has no split '{name}'", file=root, rule="spec")
        return ds.splits[name]
    if scheme == "hans":
        return load_hans(Path(arg))
    if scheme == "mnli":
        return load_mnli(Path(arg))
    if scheme == "glue-tsv":
        return load_glue_tsv(Path(arg))
    if scheme == "sick":
        return load_sick(arg)
    if scheme == "hf":
        return load_hf(arg, split)
    if scheme == "colored-digits":
        return load_colored_digits(arg, cfg, split)
    if scheme == "mnist-idx":
        return load_mnist_idx(arg, cfg, split)
    return load_waterbirds(arg, cfg, split)
