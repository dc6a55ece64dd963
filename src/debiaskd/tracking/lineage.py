"""The data version a model was trained on: the checkout's git revision, the DVC hash of ``data/`` and the
dataset's own content hash, in one string.

``data_version`` builds the string and ``parse_data_version`` reads it back (both pure); ``git_revision``
and ``dvc_data_hash`` read the checkout the package runs from, and give None where there is none (an
installed wheel, a cluster image): the string then says ``unknown`` for that part. The string has no
``scheme:`` so MLflow takes it, as it is, for a data set's source (``mlflow.data.from_pandas``).

Example: ``git=19e2f70…/dvc=ec2025b76ff1239dff83f362e69c943d.dir/data=3efdb2e9…`` (40, 32 + ``.dir`` and
64 hexadecimal characters).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

#: the parts of a data version, in order
PARTS = ("git", "dvc", "data")
UNKNOWN = "unknown"
_VALUE = re.compile(r"^[A-Za-z0-9._-]+$")


def data_version(content_hash: str, git_revision: str | None = None, dvc_hash: str | None = None) -> str:
    """``git=<revision>/dvc=<md5 of data/>/data=<content hash>``; a part not known reads ``unknown``.

    ``content_hash`` names the rows a model saw; the git revision and the DVC hash name the checkout
    (code, ``params.yaml``, ``data.dvc``) that ``dvc repro`` / ``dvc pull`` restores them from."""
    values = {"git": git_revision, "dvc": dvc_hash, "data": content_hash}
    parts = []
    for name in PARTS:
        value = (values[name] or "").strip() or UNKNOWN
        if not _VALUE.match(value):
            raise ValueError(f"{name} part of a data version must be letters, digits, '.', '_' or '-': {value!r}")
        parts.append(f"{name}={value}")
    return "/".join(parts)


def parse_data_version(text: str) -> dict[str, str | None]:
    """The parts of a :func:`data_version` string (``unknown`` reads None); ValueError when it is not one."""
    pieces = text.split("/")
    names = [piece.partition("=")[0] for piece in pieces]
    if names != list(PARTS) or not all("=" in piece for piece in pieces):
        raise ValueError(f"not a data version (git=…/dvc=…/data=…): {text!r}")
    values = {name: piece.partition("=")[2] for name, piece in zip(names, pieces, strict=True)}
    return {name: (None if value == UNKNOWN else value) for name, value in values.items()}


def checkout_root() -> Path | None:
    """The project checkout this package runs from (the folder holding ``pyproject.toml`` and
    ``src/debiaskd``), or None for an installed copy."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() and (root / "src" / "debiaskd").is_dir() else None


def git_revision(root: Path | None) -> str | None:
    """``git rev-parse HEAD`` of ``root`` when ``root`` is the top of a git work tree; None without git,
    outside a repository, in a repository without commits, or inside another project's repository."""
    if root is None:
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                             text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != Path(root).resolve():
        return None
    revision = lines[1]
    return revision if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", revision) else None


def dvc_data_hash(root: Path | None) -> str | None:
    """The md5 DVC recorded for ``data/`` (``outs[0].md5`` of ``root/data.dvc``), or None without a
    readable ``data.dvc``."""
    if root is None:
        return None
    try:
        doc = yaml.safe_load((Path(root) / "data.dvc").read_text(encoding="utf-8"))
        md5 = doc["outs"][0]["md5"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, IndexError, TypeError):
        return None
    return md5 if isinstance(md5, str) and _VALUE.match(md5) else None


def current_data_version(content_hash: str, root: Path | None = None) -> str:
    """The data version of ``content_hash`` in the checkout ``root`` (default: the one this package runs
    from, if any)."""
    root = root if root is not None else checkout_root()
    return data_version(content_hash, git_revision(root), dvc_data_hash(root))
