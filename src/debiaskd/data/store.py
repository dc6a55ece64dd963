"""Dataset folders: write atomically, read back with hash checks (built by :mod:`debiaskd.data.build`).

Layout of a dataset folder::

    manifest.json            schema version, task, per-split files / rows / sha256, content hash, meta
    <split>.jsonl            NLI rows (schema columns first, then extras such as ``bias_probs``)
    challenge_hans.tsv       the NLI challenge split again, in the HANS tab-separated layout
    challenge_dev_hans.tsv   the same for ``challenge_dev`` (embedded benchmark: the challenge split
                             for choices, disjoint in constructions from ``challenge``)
    <split>_images.npy       vision images, uint8 (N, 3, H, W) (``np.save``: byte-deterministic)
    <split>.jsonl            vision rows (image_id, label, color, bias_aligned, group)

Same input → same bytes (sorted keys, no timestamps).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from debiaskd.core.errors import DebiaskdError, short_repr
from debiaskd.core.paths import check_replaceable_dir, require_dir
from debiaskd.data.encoding import frame_to_hans_tsv, frame_to_jsonl, jsonable, jsonl_to_frame
from debiaskd.data.schema import EXTRA_SPLITS, SCHEMA_VERSION, SPLITS, ImageSplit
from debiaskd.tasks import TASK_NAMES, get_task

__all__ = ["Dataset", "Split", "check_dataset_target", "frame_to_hans_tsv", "frame_to_jsonl", "jsonl_to_frame",
           "read_dataset", "read_manifest", "read_split_file", "write_dataset"]

Split = pd.DataFrame | ImageSplit


@dataclass
class Dataset:
    """A dataset folder read back: its splits, manifest and content hash."""

    path: Path
    task: str
    splits: dict[str, Split]
    manifest: dict = field(default_factory=dict)
    content_hash: str = ""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------- write / read
def _ordered(splits: dict[str, Split]) -> list[str]:
    known = (*SPLITS, *EXTRA_SPLITS)
    return [s for s in known if s in splits] + sorted(s for s in splits if s not in known)


def _owned_names(path: Path) -> set[str] | None:
    """The names a previous :func:`write_dataset` left in ``path`` (from its manifest), or None."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(manifest, dict) or not {"schema_version", "task", "splits", "content_hash"} <= set(manifest):
        return None
    splits = manifest["splits"]
    if not isinstance(splits, dict):
        return None
    names = {"manifest.json"}
    for info in splits.values():
        files = info.get("files") if isinstance(info, dict) else None
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            return None
        names.update(files)
    return names


def check_dataset_target(out_dir: str | Path, option: str = "--out") -> Path:
    """Refuse, before any work, a target that :func:`write_dataset` would have to destroy.

    Allowed: an absent path, an empty folder, or a dataset folder this module wrote that holds
    nothing but what its manifest lists. A file, or a folder with anything else, is refused."""

    out = Path(out_dir)
    owned = _owned_names(out) if out.is_dir() else None
    return check_replaceable_dir(out, option, owned)


def write_dataset(out_dir: str | Path, task: str, splits: dict[str, Split], meta: dict | None = None) -> dict:
    """Write a dataset folder atomically (temp sibling, then rename) and return its manifest.

    An existing target is only replaced when it is a dataset folder written here (see
    :func:`check_dataset_target`): nothing the user put there is ever deleted."""
    kind = get_task(task)  # an unknown task is refused here
    out = Path(out_dir)
    check_dataset_target(out)
    manifest_splits: dict[str, dict] = {}
    payload: dict[str, bytes] = {}
    for name in _ordered(splits):
        files = kind.encode_split(name, splits[name])
        payload.update(files)
        digest = _sha(b"".join(_sha(b).encode() + fn.encode() for fn, b in files.items()))
        manifest_splits[name] = {"files": list(files), "rows": len(splits[name]), "sha256": digest}
    content = _sha(json.dumps({"schema_version": SCHEMA_VERSION, "task": task,
                               "splits": {k: v["sha256"] for k, v in manifest_splits.items()}},
                              sort_keys=True).encode())
    manifest = {"schema_version": SCHEMA_VERSION, "task": task, "splits": manifest_splits,
                "content_hash": content, "meta": jsonable(meta or {})}
    payload["manifest.json"] = (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()

    # fresh, unique sibling names: nothing that was there before is ever removed
    unique = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp = out.parent / f".{out.name}.tmp-{unique}"
    old = out.parent / f".{out.name}.old-{unique}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()  # exclusive: fails rather than reuse anything already there
    except OSError as exc:
        raise DebiaskdError(f"cannot write the dataset: {exc.strerror}", file=str(out),
                            rule="writable output") from exc
    try:
        for fn, data in payload.items():
            (tmp / fn).write_bytes(data)
        check_dataset_target(out)  # again, right before the swap
        if out.exists():
            out.rename(old)
        tmp.rename(out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            old.rename(out)
        if isinstance(exc, OSError):
            raise DebiaskdError(f"cannot write the dataset: {exc.strerror}", file=str(out),
                                rule="writable output") from exc
        raise
    shutil.rmtree(old, ignore_errors=True)
    return manifest


def _check_manifest_shape(manifest: Any, label: str) -> None:
    """The manifest is the JSON object :func:`write_dataset` writes; anything else is named, not crashed on."""
    def bad(what: str) -> DebiaskdError:
        return DebiaskdError(f"manifest {what}", file=label, rule="manifest shape")

    if not isinstance(manifest, dict):
        raise bad(f"is a JSON {type(manifest).__name__}, not an object")
    for key in ("schema_version", "task", "splits", "content_hash"):
        if key not in manifest:
            raise DebiaskdError(f"manifest lacks '{key}'", file=label, rule="manifest")
    if manifest["task"] not in TASK_NAMES:
        raise bad(f"task must be {' or '.join(repr(t) for t in TASK_NAMES)}; got {short_repr(manifest['task'], 60)}")
    if not isinstance(manifest["content_hash"], str):
        raise bad("content_hash must be a string")
    splits = manifest["splits"]
    if not isinstance(splits, dict) or not splits:
        raise bad("splits must be a non-empty object of split name → {files, rows, sha256}")
    for name, info in splits.items():
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise bad(f"split name {short_repr(name, 60)} is not a plain name")
        if not isinstance(info, dict):
            raise bad(f"split '{name[:60]}' must be an object")
        files = info.get("files")
        if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
            raise bad(f"split '{name[:60]}' files must be a non-empty list of file names")
        if not all("/" not in f and "\\" not in f for f in files):
            raise DebiaskdError(f"split '{name[:60]}' lists a file outside the dataset folder", file=label,
                                rule="manifest files", examples=[f for f in files if "/" in f or "\\" in f][:3])
        if not isinstance(info.get("sha256"), str):
            raise bad(f"split '{name[:60]}' sha256 must be a string")


def read_manifest(path: str | Path) -> dict:
    mpath = Path(path) / "manifest.json"
    if not Path(path).is_dir():

        require_dir(path, "a dataset folder (with manifest.json)", "dataset folder")
    if not mpath.is_file():
        raise DebiaskdError("no manifest.json: not a dataset folder", file=str(path), rule="dataset folder")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DebiaskdError(f"manifest is not valid JSON ({exc})", file=str(mpath), rule="manifest") from exc
    except RecursionError as exc:
        raise DebiaskdError("manifest JSON is nested too deeply", file=str(mpath), rule="manifest") from exc
    except OSError as exc:
        raise DebiaskdError(f"cannot read the manifest ({exc.strerror})", file=str(mpath), rule="manifest") from exc
    _check_manifest_shape(manifest, str(mpath))
    if manifest["schema_version"] != SCHEMA_VERSION:
        raise DebiaskdError(f"schema version {manifest['schema_version']} != {SCHEMA_VERSION}",
                            file=str(mpath), rule="schema version")
    return manifest


def read_split_file(path: Path, task: str, name: str) -> Split:
    """One split of a dataset folder (no hash check)."""
    rows_file = path / f"{name}.jsonl"
    if not rows_file.is_file():
        raise DebiaskdError("split file missing", file=str(rows_file), rule="dataset folder")
    kind = get_task(task)
    try:
        data = rows_file.read_bytes()
    except OSError as exc:
        raise DebiaskdError(f"cannot read this file ({exc.strerror})", file=str(rows_file),
                            rule="readable file") from exc
    return kind.decode_split(path, name, jsonl_to_frame(data, str(rows_file), kind.columns))


def read_dataset(path: str | Path, verify: bool = True) -> Dataset:
    """Read a dataset folder; with ``verify`` every file must match the manifest's hashes."""
    root = Path(path)
    manifest = read_manifest(root)
    task = manifest["task"]
    splits: dict[str, Split] = {}
    for name, info in manifest["splits"].items():
        if verify:
            parts = []
            for fn in info["files"]:
                f = root / fn
                if not f.is_file() or f.resolve().parent != root.resolve():
                    raise DebiaskdError("file listed in the manifest is missing", file=str(f),
                                        rule="manifest files")
                parts.append(_sha(f.read_bytes()).encode() + fn.encode())
            if _sha(b"".join(parts)) != info["sha256"]:
                raise DebiaskdError(f"split '{name}' does not match its manifest hash (modified after writing?)",
                                    file=str(root / info["files"][0]), rule="manifest sha256")
        splits[name] = read_split_file(root, task, name)
    return Dataset(root, task, splits, manifest, manifest["content_hash"])
