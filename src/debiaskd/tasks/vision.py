"""Vision: digits (sklearn digits, MNIST) or Waterbirds with a colour or background shortcut;
small ResNet teachers and CNN students."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from debiaskd.core.config import StudyConfig, ValidationConfig, VisionDataConfig
from debiaskd.core.errors import DebiaskdError
from debiaskd.core.paths import describe
from debiaskd.core.task import Loader, Task
from debiaskd.data.augment import augment_vision
from debiaskd.data.checks import Failure, group_and_id_rules, is_type
from debiaskd.data.encoding import frame_to_jsonl, npy_bytes
from debiaskd.data.generate_vision import generate_vision
from debiaskd.data.schema import VISION_COLUMNS, ImageSplit
from debiaskd.training.bias import add_bias_probs, fit_color_bias_model


@functools.lru_cache(maxsize=4)
def generated_from_json(cfg_json: str) -> dict[str, ImageSplit]:
    """The embedded benchmark of a ``vision_data`` section (as JSON: the cache key)."""
    return generate_vision(VisionDataConfig.model_validate_json(cfg_json))


def image_array_failures(split: ImageSplit, file_label: str) -> list[Failure]:
    images = np.asarray(split.images)
    out = []
    if images.dtype != np.uint8:
        out.append(Failure(file_label, "image dtype uint8", "image array check", f"dtype is {images.dtype}"))
    if images.ndim != 4 or images.shape[1] != 3:
        out.append(Failure(file_label, "image shape (N, 3, H, W)", "image array check",
                           f"shape is {tuple(images.shape)}"))
    elif images.shape[2] < 1 or images.shape[3] < 1:
        out.append(Failure(file_label, "image shape (N, 3, H, W)", "image array check", "empty H or W"))
    if len(images) != len(split.frame):
        out.append(Failure(file_label, "one image per row", "image array check",
                           f"{len(images)} images for {len(split.frame)} rows"))
    return out


class VisionTask(Task):
    name = "vision"
    format_noun = "a vision format"
    schemes = ("colored-digits", "mnist-idx", "waterbirds")
    columns = VISION_COLUMNS
    id_column = "image_id"
    leak_columns = ()
    example_columns = VISION_COLUMNS
    marks_constructions = False
    split_type_rule = ("vision split", "not an image split")

    # -- data: shape, groups, labels
    def is_split(self, split: Any) -> bool:
        return isinstance(split, ImageSplit)

    def frame(self, split: Any) -> pd.DataFrame:
        return split.frame

    def take(self, split: Any, index: Any) -> ImageSplit:
        return split.subset(index)

    def input_digest(self, split: Any, max_length: int | None = None) -> str:
        h = hashlib.sha256(np.ascontiguousarray(split.images).tobytes())
        h.update(str(split.images.shape).encode())
        return h.hexdigest()[:20]

    def group_name(self, bias: Any, label: Any) -> str:
        return f"{label}/{bias}"

    def label_names(self, split: Any) -> list[str]:
        if not isinstance(split, ImageSplit):
            raise DebiaskdError("vision training needs an ImageSplit", rule="task")
        return [str(c) for c in split.class_names]

    # -- data: loading and storing
    def generated(self, cfg: StudyConfig) -> dict[str, ImageSplit]:
        return generated_from_json(self.sections(cfg).data.model_dump_json())

    def encode_split(self, name: str, split: Any) -> dict[str, bytes]:
        if not isinstance(split, ImageSplit):
            raise DebiaskdError(f"split '{name}' is not an ImageSplit", rule="vision split")
        return {f"{name}_images.npy": npy_bytes(split.images),
                f"{name}.jsonl": frame_to_jsonl(split.frame, VISION_COLUMNS)}

    def decode_split(self, folder: Any, name: str, frame: pd.DataFrame) -> ImageSplit:
        img_file = Path(folder) / f"{name}_images.npy"
        try:
            images = np.load(img_file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DebiaskdError(f"cannot read images ({exc})", file=str(img_file), rule="npy") from exc
        return ImageSplit(images, frame)

    def holdout_view(self, base: Any, load: Loader, spec: str, split: str) -> Any:
        return load(spec, split)  # the same rows with this split's treatment (train colouring vs uniform)

    def derives_split(self, name: str, spec: str, train_is_real: bool) -> bool:
        # real training data: the challenge is the bias-conflicting part of the real test split
        return name == "challenge" and train_is_real and spec.startswith("generated:")

    def finish_build(self, cfg: StudyConfig, splits: dict[str, Any], specs: dict[str, str],
                     meta: dict[str, Any], load: Loader) -> dict[str, Any]:
        cap = self.sections(cfg).data.max_train
        if not specs["train"].startswith("generated:") and cap is not None:
            splits["train"] = splits["train"].subset(np.arange(min(len(splits["train"]), cap)))
        return splits

    def spec_split_name(self, split: Any) -> str:
        return "test"

    # -- data: validation
    def split_failures(self, split: Any, file_label: str) -> list[Any]:
        return image_array_failures(split, file_label.replace(".jsonl", "_images.npy"))

    def validation_rules(self, split: Any, cfg: ValidationConfig) -> tuple[pd.DataFrame, list[tuple[str, Any]]]:
        import great_expectations as gx  # slow (seconds) and only needed to validate

        E = gx.expectations
        frame = split.frame.reset_index(drop=True).copy()
        rules: list[tuple[str, Any]] = [
            ("schema: required columns",
             E.ExpectTableColumnsToMatchSet(column_set=list(VISION_COLUMNS), exact_match=False)),
            ("non-empty split", E.ExpectTableRowCountToBeBetween(min_value=1)),
        ]
        for c in VISION_COLUMNS:
            if c in frame.columns:
                rules.append((f"no missing values in {c}", E.ExpectColumnValuesToNotBeNull(column=c)))
        images = np.asarray(split.images)
        if images.ndim == 4 and len(images) == len(frame) and len(frame):
            flat = images.reshape(len(images), -1)
            with np.errstate(invalid="ignore"):
                frame["_pixel_min"] = flat.min(axis=1).astype(float)
                frame["_pixel_max"] = flat.max(axis=1).astype(float)
            frame["_pixel_nan"] = (np.isnan(flat).any(axis=1) if np.issubdtype(flat.dtype, np.floating)
                                   else np.zeros(len(flat), dtype=bool))
            rules += [
                ("image has no NaN", E.ExpectColumnValuesToBeInSet(column="_pixel_nan", value_set=[False])),
                ("pixel range 0..255", E.ExpectColumnValuesToBeBetween(column="_pixel_min", min_value=0,
                                                                       max_value=255)),
                ("pixel range 0..255", E.ExpectColumnValuesToBeBetween(column="_pixel_max", min_value=0,
                                                                       max_value=255)),
            ]
        n_classes = len(split.class_names)
        if "label" in frame.columns:
            frame["_label"] = frame["label"].map(lambda v: int(v) if isinstance(v, (int, np.integer)) and not
                                                 isinstance(v, bool) else -1)
            rules.append((f"label set 0..{n_classes - 1}",
                          E.ExpectColumnValuesToBeInSet(column="_label", value_set=list(range(n_classes)))))
        if "color" in frame.columns:
            frame["_color"] = frame["color"].map(lambda v: v if isinstance(v, str) else "<missing>")
            rules.append(("colour set", E.ExpectColumnValuesToBeInSet(column="_color",
                                                                      value_set=list(split.group_names))))
        if "bias_aligned" in frame.columns:
            frame["_bias_aligned_is_bool"] = is_type(frame["bias_aligned"], (bool, np.bool_))
            rules.append(("type: bias_aligned is boolean",
                          E.ExpectColumnValuesToBeInSet(column="_bias_aligned_is_bool", value_set=[True])))
        rules += group_and_id_rules(frame, E, ("label", "color"), "group = label/colour", "image_id",
                                    lambda ids: ids.astype(str))
        return frame, rules

    def challenge_group_counts(self, split: Any) -> dict[str, int] | None:
        """Bias-conflicting rows of every class."""
        frame = split.frame
        conflict = frame[~frame["bias_aligned"].astype(bool)]
        got = conflict["label"].value_counts()
        return {f"{k}/conflicting": int(got.get(k, 0)) for k in range(len(split.class_names))}

    # -- the augment step
    def augment(self, cfg: StudyConfig, splits: dict[str, Any]) -> tuple[dict[str, Any], int]:
        splits = dict(splits)
        bias = fit_color_bias_model(splits["train"])
        extra = augment_vision(splits["train"], cfg.augment, cfg.augment.seed)
        train = splits["train"]
        splits["train_augmented"] = ImageSplit(
            np.concatenate([train.images, extra.images]),
            pd.concat([train.frame, extra.frame], ignore_index=True),
            train.class_names, train.group_names,
        )
        for name in list(splits):
            split = splits[name]
            split.frame = add_bias_probs(split.frame, bias.predict_proba(split))
        return splits, len(extra)

    # -- evaluation
    def two_way(self, frame: pd.DataFrame) -> bool:
        return False

    def check_model_labels(self, loaded: Any, data: Any, spec: str) -> None:
        frame = data.frame if isinstance(data, ImageSplit) else data
        n_classes = int(loaded.meta.get("num_classes", 10))
        data_classes = len(data.class_names) if isinstance(data, ImageSplit) and data.class_names else None
        if data_classes is not None and data_classes != n_classes:
            raise DebiaskdError(f"the model has {n_classes} classes but the data has {data_classes} "
                                f"({', '.join(map(str, data.class_names[:5]))}; data: {spec})",
                                file=str(loaded.path), rule="model label count")
        bad = [int(v) for v in frame["label"].unique() if not 0 <= int(v) < n_classes]
        if bad:
            raise DebiaskdError(f"labels {sorted(bad)} are outside the model's {n_classes} classes (data: {spec})",
                                file=str(loaded.path), rule="model label count")

    def serving_inputs(self) -> tuple[Any, Any]:
        from mlflow.types import Schema, TensorSpec  # slow (MLflow) and only needed to log a model

        inputs = Schema([TensorSpec(np.dtype(np.uint8), (-1, 3, -1, -1))])  # any size: the nets pool globally
        return inputs, np.zeros((1, 3, 16, 16), dtype=np.uint8)

    def check_model_source(self, model_cfg: Any) -> None:
        if model_cfg.pretrained_path:
            path = Path(model_cfg.pretrained_path).expanduser()
            if not (path.is_file() or (path / "model.safetensors").is_file()):
                raise DebiaskdError(f"pretrained weights: this path {describe(path)}; expected a .safetensors "
                                    "file or a debiaskd vision model folder", file=str(path),
                                    rule="vision_model.pretrained_path")

    # -- training
    def make_inputs(self, data: Any, label_names: list[str], tokenizer: Any = None, max_length: int = 64) -> Any:
        from debiaskd.training.inputs import ImageInputs  # torch: slow, and only needed to train

        return ImageInputs(data)

    def build_model(self, model_cfg: Any, role: str, seed: int, *, init_from: Any = None,
                    teacher_model: Any = None, layers: int | None = None, layer_map: list[int] | None = None,
                    num_classes: int = 10, tokenizer: Any = None) -> tuple[Any, Any, dict[str, Any]]:
        # torch: slow, and only needed to train
        from debiaskd.training.models import (
            build_vision_model,
            init_vision_from_teacher,
            load_vision_weights,
            vision_arch,
        )

        arch, width = vision_arch(model_cfg, role)
        model = build_vision_model(arch, width, num_classes, seed)
        meta: dict[str, Any] = {"arch": arch, "width": width, "num_classes": num_classes}
        if role == "teacher" and model_cfg.pretrained_path:
            meta["pretrained_from"] = load_vision_weights(model, model_cfg.pretrained_path, arch, width)
        if init_from is not None:
            meta["init_copied"] = init_vision_from_teacher(model, init_from.model)
        return model, None, meta
