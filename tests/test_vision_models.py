"""The vision models: ResNets from torchvision's BasicBlock, and a teacher started from saved weights
(``vision_model.pretrained_path``)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from cli_checks import fails_cleanly
from debiaskd.core.config import load_config
from debiaskd.core.errors import DebiaskdError
from debiaskd.tasks import get_task
from debiaskd.training.models import (
    VISION_WEIGHTS,
    build_vision_model,
    load_model,
    save_model,
    upgrade_vision_state,
)


class LegacyBlock(nn.Module):
    """The hand-written block the ResNets used before torchvision's (kept here to show the switch
    changed names only: same tensors drawn in the same order, same function)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class LegacyResNet(nn.Module):
    def __init__(self, num_classes: int, width: int, blocks: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, cin = [], width
        for i, mult in enumerate((1, 2, 4)):
            for j in range(blocks):
                stages.append(LegacyBlock(cin, width * mult, 2 if (i > 0 and j == 0) else 1))
                cin = width * mult
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)).mean(dim=(2, 3)))


def test_resnets_are_built_from_torchvision_blocks():
    model = build_vision_model("resnet18", 8, 10, 0)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 6  # 2 a stage, 3 stages
    assert not any(isinstance(m, LegacyBlock) for m in model.modules())
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 10)


def test_torchvision_blocks_draw_and_compute_as_the_hand_written_ones():
    torch.manual_seed(3)
    legacy = LegacyResNet(10, 8, 2).eval()
    new = build_vision_model("resnet18", 8, 10, 3).eval()
    old_state = upgrade_vision_state(legacy.state_dict())
    new_state = new.state_dict()
    assert list(old_state) == list(new_state)
    for key, value in old_state.items():
        assert torch.equal(value, new_state[key]), key
    x = torch.rand(4, 3, 16, 16)
    assert torch.allclose(legacy(x), new(x), atol=1e-6)


def test_models_saved_with_the_old_block_names_still_load(tmp_path):
    torch.manual_seed(0)
    legacy = LegacyResNet(10, 8, 1)
    folder = save_model(build_vision_model("resnet_small", 8, 10, 5), tmp_path / "m",
                        {"task": "vision", "arch": "resnet_small", "width": 8, "num_classes": 10,
                         "label_names": [str(i) for i in range(10)]})
    from safetensors.torch import save_file

    save_file(legacy.state_dict(), str(folder / VISION_WEIGHTS))  # the old names on disk
    loaded = load_model(folder)
    for key, value in upgrade_vision_state(legacy.state_dict()).items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def _vision_cfg(**model):
    sets = ["task=vision"] + [f"vision_model.{k}={v}" for k, v in model.items()]
    return load_config(preset="smoke", overrides=sets)


def test_teacher_starts_from_pretrained_weights(tmp_path):
    cfg = _vision_cfg()
    task = get_task("vision")
    source, _, meta = task.build_model(cfg.vision_model, "teacher", seed=7)
    folder = save_model(source, tmp_path / "teacher", {"task": "vision", **meta,
                                                        "label_names": [str(i) for i in range(10)]})
    for path in (folder, folder / VISION_WEIGHTS):  # a model folder or its weights file
        cfg = _vision_cfg(pretrained_path=str(path))
        model, _, meta = task.build_model(cfg.vision_model, "teacher", seed=0)
        assert meta["pretrained_from"] == str(folder / VISION_WEIGHTS)
        for key, value in source.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key
    # the student is built as before: pretrained weights are the teacher's
    _student, _, smeta = task.build_model(cfg.vision_model, "student", seed=0)
    assert "pretrained_from" not in smeta


def test_pretrained_weights_of_another_shape_are_refused(tmp_path):
    task = get_task("vision")
    cfg = _vision_cfg()
    other = build_vision_model(cfg.vision_model.teacher, cfg.vision_model.teacher_width * 2, 10, 0)
    folder = save_model(other, tmp_path / "wide", {"task": "vision", "arch": cfg.vision_model.teacher,
                                                   "width": cfg.vision_model.teacher_width * 2,
                                                   "num_classes": 10, "label_names": [str(i) for i in range(10)]})
    cfg = _vision_cfg(pretrained_path=str(folder))
    try:
        task.build_model(cfg.vision_model, "teacher", seed=0)
    except DebiaskdError as exc:
        assert exc.rule == "vision_model.pretrained_path"
        assert "do not fit" in exc.message and str(folder) in str(exc.file)
    else:
        raise AssertionError("weights of another width were accepted")


def test_missing_pretrained_weights_fail_before_the_run(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "teacher.safetensors"
    out = tmp_path / "out"
    fails_cleanly(["run", "--preset", "smoke", "--task", "vision", "--set",
                   f"vision_model.pretrained_path={missing}", "--out", str(out)],
                  ["vision_model.pretrained_path", str(missing)], capsys, root=tmp_path)
    assert not out.exists()
