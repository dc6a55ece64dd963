"""The typed configuration: presets, YAML files, --set overrides and their errors."""

from __future__ import annotations

import pytest
import yaml

from debiaskd.core.config import VARIANTS, config_from_yaml_text, load_config
from debiaskd.core.errors import DebiaskdError
from debiaskd.core.study import variant_specs


def test_presets_differ_where_they_should():
    smoke, default, paper = (load_config(p) for p in ("smoke", "default", "paper"))
    assert smoke.nli_model.teacher == "tiny" and default.nli_model.teacher == "minilm"
    assert paper.cluster.gpu_per_training_task == 1 and default.cluster.gpu_per_training_task == 0
    assert len(paper.seeds) >= 3
    assert smoke.nli_data.n_train < default.nli_data.n_train


def test_yaml_file_then_set_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("distill:\n  temperature: 4.0\n  alpha: 0.7\nseeds: [1, 2]\n")
    cfg = load_config("smoke", f, ["distill.alpha=0.2", "nli_model.student_layers=2"])
    assert cfg.distill.temperature == 4.0 and cfg.distill.alpha == 0.2
    assert cfg.seeds == [1, 2] and cfg.nli_model.student_layers == 2
    assert cfg.nli_model.teacher == "tiny"  # preset value kept


def test_resolved_config_roundtrips_and_hash_is_stable():
    cfg = load_config("default", overrides=["task=vision"])
    again = config_from_yaml_text(cfg.to_yaml())
    assert again == cfg and again.config_hash() == cfg.config_hash()
    assert load_config("default").config_hash() != cfg.config_hash()


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["distill.temprature=3"], "distill.temprature"),
        (["distill.alpha=1.5"], "distill.alpha"),
        (["teacher_train.epochs=0"], "teacher_train.epochs"),
        (["variants=[student_magic]"], "student_magic"),
        (["task=audio"], "task"),
        (["no_equals_sign"], "key.path=value"),
    ],
)
def test_bad_overrides_name_the_key(overrides, needle):
    with pytest.raises(DebiaskdError) as err:
        load_config("default", overrides=overrides)
    assert needle in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(DebiaskdError, match="does not exist"):
        load_config("default", tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("distill: [unclosed\n")
    with pytest.raises(DebiaskdError, match="not valid YAML"):
        load_config("default", bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(DebiaskdError, match="mapping"):
        load_config("default", listy)
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("seeds: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(DebiaskdError):
        load_config("default", unsafe)


def test_unknown_preset():
    with pytest.raises(DebiaskdError, match="unknown preset"):
        load_config("huge")


def test_every_variant_is_configured_and_students_pull_their_teacher():
    specs = variant_specs(load_config("default"))
    assert tuple(specs) == VARIANTS
    assert specs["student_kd_all"].augment and specs["student_kd_all"].teacher_init
    assert specs["student_kd_all"].rounds == load_config("default").distill.rounds
    assert specs["student_kd_debiased"].method == "product_of_experts"
    only = variant_specs(load_config("default", overrides=["variants=[student_kd]"]))
    assert set(only) == {"student_kd", "teacher_debiased"}


def test_saved_yaml_is_plain(tmp_path):
    from debiaskd.core.config import save_config

    path = save_config(load_config("smoke"), tmp_path / "r.yaml")
    data = yaml.safe_load(path.read_text())
    assert data["preset"] == "smoke" and data["nli_model"]["teacher"] == "tiny"


def test_each_seed_draws_its_own_data_seed_zero_keeps_the_configured_one():
    cfg = load_config("default", overrides=["nli_data.seed=5", "augment.seed=7"])
    assert cfg.for_seed(0) == cfg  # one seed: exactly the data `data generate` writes
    three = cfg.for_seed(3)
    assert (three.nli_data.seed, three.vision_data.seed, three.augment.seed) == (8, 3, 10)
    assert three.teacher_train == cfg.teacher_train and three.seeds == cfg.seeds  # only the data seeds move
    top = load_config("default", overrides=["nli_data.seed=4294967295"]).for_seed(2)
    assert top.nli_data.seed == 1  # wraps within the seed range
    fixed = load_config("default", overrides=["vary_data_with_seed=false"])
    assert fixed.for_seed(3) == fixed
