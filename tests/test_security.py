"""Security: untrusted data and models are never executed, and nothing secret is compiled in.

Covered elsewhere (not repeated here): the k8s MLflow Service is ClusterIP with no Ingress
(``test_k8s.py::test_services_are_cluster_internal``), containers and images run as non-root
(``test_k8s.py``, ``test_docker.py::test_runtime_stage_is_lean_and_unprivileged``), and the
repository holds no secrets (``test_secrets_scan.py``).
"""

from __future__ import annotations

import ast
import json
import pickle
import secrets
from pathlib import Path

import pytest

from debiaskd.core.config import load_config
from debiaskd.core.errors import DebiaskdError
from test_secrets_scan import scan_file, scan_text

REPO = Path(__file__).resolve().parents[1]
CODE_DIRS = ("src", "components", "pipeline")
PICKLERS = ("pickle", "cPickle", "dill", "joblib", "cloudpickle")


def product_python_files() -> list[Path]:
    files = [p for d in CODE_DIRS for p in sorted((REPO / d).rglob("*.py")) if "__pycache__" not in p.parts]
    assert len(files) > 20, "the scan found too few files to be meaningful"
    return files


# ------------------------------------------------------------------------- static scan
def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node: ast.AST | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_calls(source: str, name: str) -> list[str]:
    """Deserialisation that can run code: pickle, torch.load without weights_only, np.load with
    pickles, yaml.load without a safe loader, and ``trust_remote_code=True``."""
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        if not isinstance(node, ast.Call):
            continue
        fn = _dotted(node.func)
        where = f"{name}:{node.lineno}: {fn or '<call>'}"
        last = fn.rsplit(".", 1)[-1]
        pickled = fn.split(".")[0] in PICKLERS and last in {"load", "loads"}
        if pickled or fn.endswith("Unpickler"):
            found.append(where + " (pickle)")
        elif fn == "torch.load" and not _is_const(_kw(node, "weights_only"), True):
            found.append(where + " without weights_only=True")
        elif fn in ("np.load", "numpy.load") and not _is_const(_kw(node, "allow_pickle"), False):
            found.append(where + " without allow_pickle=False")
        elif fn in ("yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all", "yaml.full_load_all"):
            found.append(where + " (unsafe yaml)")
        elif fn in ("yaml.load", "yaml.load_all"):
            loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if _dotted(loader) not in ("yaml.SafeLoader", "yaml.CSafeLoader", "SafeLoader", "CSafeLoader"):
                found.append(where + " without SafeLoader")
        if _is_const(_kw(node, "trust_remote_code"), True):
            found.append(where + " with trust_remote_code=True")
        if _is_const(_kw(node, "use_safetensors"), False):
            found.append(where + " with use_safetensors=False")
    return found


def test_product_code_never_deserialises_unsafely():
    problems = [p for f in product_python_files()
                for p in unsafe_calls(f.read_text(encoding="utf-8"), str(f.relative_to(REPO)))]
    assert not problems, "\n".join(problems)


def test_no_trust_remote_code_anywhere_in_product_code():
    hits = [f"{f.relative_to(REPO)}:{i}" for f in product_python_files()
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
            if "trust_remote_code=True" in line.replace(" ", "")]
    assert not hits, hits


@pytest.mark.parametrize("snippet", [
    "import pickle\npickle.load(open('m.pkl', 'rb'))",
    "import pickle\npickle.loads(b'')",
    "import torch\ntorch.load('w.pt')",
    "import torch\ntorch.load('w.pt', weights_only=False)",
    "import numpy as np\nnp.load('x.npy')",
    "import numpy as np\nnp.load('x.npy', allow_pickle=True)",
    "import yaml\nyaml.load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.Loader)",
    "import yaml\nyaml.unsafe_load(text)",
    "from transformers import AutoModel\nAutoModel.from_pretrained('x', trust_remote_code=True)",
    "from transformers import AutoModel\nAutoModel.from_pretrained('x', use_safetensors=False)",
])
def test_the_scanner_catches_unsafe_calls(snippet):
    assert unsafe_calls(snippet, "planted.py")


@pytest.mark.parametrize("snippet", [
    "import torch\ntorch.load('w.pt', weights_only=True)",
    "import numpy as np\nnp.load('x.npy', allow_pickle=False)",
    "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)\nyaml.safe_load(text)",
    "from safetensors.torch import load_file\nload_file('m.safetensors')",
])
def test_the_scanner_accepts_safe_calls(snippet):
    assert unsafe_calls(snippet, "safe.py") == []


# ------------------------------------------------------------------------------ YAML
@pytest.mark.parametrize("payload", [
    "teacher_train: !!python/object/apply:os.system ['touch {marker}']\n",
    "!!python/object/new:subprocess.Popen [['touch', '{marker}']]\n",
    "seeds: !!python/name:os.system\n",
])
def test_config_yaml_with_python_tags_is_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    f = tmp_path / "evil.yaml"
    f.write_text(payload.format(marker=marker), encoding="utf-8")
    with pytest.raises(DebiaskdError) as info:
        load_config("smoke", config_file=f)
    assert info.value.file == str(f) and info.value.rule == "config file"
    assert not marker.exists()


def test_override_values_with_python_tags_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(DebiaskdError):
        load_config("smoke", overrides=[f"seeds=!!python/object/apply:os.system ['touch {marker}']"])
    assert not marker.exists()


# -------------------------------------------------------------------- data archives
def _waterbirds(root: Path, filename: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "metadata.csv").write_text(f"img_id,img_filename,y,split,place\n1,{filename},0,2,0\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("filename", ["../../etc/passwd", "/etc/passwd", "birds/../../outside.jpg"])
def test_waterbirds_paths_cannot_leave_the_data_folder(tmp_path, filename):
    from debiaskd.data.loaders import load_spec

    root = _waterbirds(tmp_path / "wb", filename)
    with pytest.raises(DebiaskdError) as info:
        load_spec(f"waterbirds:{root}", "vision", load_config("smoke", task="vision"), "test")
    assert info.value.rule == "path traversal"
    assert info.value.file == str(root / "metadata.csv")


def test_waterbirds_symlink_out_of_the_data_folder_is_refused(tmp_path):
    from PIL import Image

    from debiaskd.data.loaders import load_spec

    outside = tmp_path / "outside.png"
    Image.new("RGB", (4, 4)).save(outside)
    root = _waterbirds(tmp_path / "wb", "birds/bird.png")
    (root / "birds").mkdir()
    (root / "birds" / "bird.png").symlink_to(outside)
    with pytest.raises(DebiaskdError) as info:
        load_spec(f"waterbirds:{root}", "vision", load_config("smoke", task="vision"), "test")
    assert info.value.rule == "path traversal"


def test_dataset_manifest_cannot_point_outside_its_folder(tmp_path):
    from debiaskd.data.build import build_dataset
    from debiaskd.data.store import read_dataset

    ds = build_dataset(load_config("smoke"), tmp_path / "ds", "nli")
    (tmp_path / "secret.jsonl").write_text("{}\n")
    manifest = json.loads((ds / "manifest.json").read_text())
    manifest["splits"]["test"]["files"] = ["../secret.jsonl"]
    (ds / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DebiaskdError) as info:
        read_dataset(ds)
    assert info.value.rule == "manifest files"


# ----------------------------------------------------------------------------- models
class _Payload:
    """Unpickling this creates ``marker``: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def tiny_nli_model(tmp_path_factory) -> Path:
    from debiaskd.training.models import build_nli_teacher, save_model

    cfg = load_config("smoke", overrides=["nli_model.tiny_layers=1", "nli_model.tiny_hidden=16",
                                          "nli_model.tiny_heads=1"])
    model, tokenizer = build_nli_teacher(cfg.nli_model, 0)
    return save_model(model, tmp_path_factory.mktemp("model") / "m",
                      {"task": "nli", "label_names": ["entailment", "neutral", "contradiction"]}, tokenizer)


def test_nli_model_folder_with_only_pickled_weights_is_refused(tiny_nli_model, tmp_path):
    import shutil

    from debiaskd.training.models import load_model

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_nli_model, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(DebiaskdError) as info:
        load_model(folder)
    assert info.value.file == str(folder) and info.value.rule == "model path"
    assert not marker.exists()


def test_vision_model_folder_with_only_pickled_weights_is_refused(tmp_path):
    from debiaskd.training.models import load_model

    folder = tmp_path / "vision-model"
    folder.mkdir()
    (folder / "debiaskd.json").write_text(json.dumps({"task": "vision", "arch": "cnn_small", "width": 4}))
    marker = tmp_path / "pwned"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(DebiaskdError) as info:
        load_model(folder)
    assert info.value.rule == "model path" and "model.safetensors" in info.value.message
    assert not marker.exists()


def test_safetensors_model_still_loads(tiny_nli_model):
    from debiaskd.training.models import load_model

    loaded = load_model(tiny_nli_model)
    assert loaded.label_names == ["entailment", "neutral", "contradiction"]


# ------------------------------------------------------------------- compiled pipeline
def test_compiled_pipeline_holds_no_secrets(tmp_path, monkeypatch):
    """Credentials in the compiling environment never end up in the IR YAML."""
    from debiaskd.pipeline import compile_pipeline

    planted = {name: secrets.token_hex(20) for name in (
        "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID",
        "KF_PIPELINES_TOKEN")}
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "paper.yaml"
    compile_pipeline(load_config("paper"), str(path))
    text = path.read_text(encoding="utf-8")
    assert "deploymentSpec" in text
    leaked = [name for name, value in planted.items() if value in text]
    assert not leaked, f"values of {leaked} were compiled into the pipeline"
    findings = scan_file(path)
    assert not findings, [str(f) for f in findings]
    # and the scanner would have seen a credential planted in that same file
    assert scan_text(text + "\n    password: " + secrets.token_hex(12) + "\n", str(path))
