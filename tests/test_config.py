"""Run configs: YAML round trip, ``--set`` overrides, task references, path anchoring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from camtl.config import (
    RunConfig,
    apply_override,
    config_from_dict,
    config_to_yaml,
    load_config,
    save_config,
)
from camtl.errors import ConfigError
from camtl.structured import to_dict
from camtl.tasks.registry import get_task

INLINE = {
    "name": "mine",
    "type": "classification",
    "text_columns": ["text"],
    "label_column": "label",
    "labels": ["neg", "pos"],
    "metrics": ["macro_f1"],
    "source": {"paths": {"train": "data/train.csv", "dev": "/abs/dev.csv"}},
}


def write_yaml(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def full_config() -> dict[str, Any]:
    """Every section set away from its default, so the round trip checks each key."""
    return {
        "output_dir": "/runs/x",
        "seed": 5,
        "model": {
            "encoder": "/models/enc",
            "pooling": "cls",
            "dropout": 0.2,
            "attention": "eager",
            "attention_dropout": 0.0,
            "hidden_dropout": 0.05,
            "freeze_embeddings": True,
            "freeze_layers": 2,
        },
        "tasks": ["snli", {"name": "stsb", "max_train_examples": 100}, dict(INLINE)],
        "training": {
            "max_steps": 7,
            "batch_size": 3,
            "learning_rate": 1e-4,
            "mixed_precision": "bf16",
            "optimizer_impl": "foreach",
            "cast_frozen_once": False,
            "batch_mode": "single_task",
            "sampler": {"name": "temperature", "options": {"temperature": 3.0}},
            "eval_every": 5,
            "checkpoint_every": 2,
            "select_by": "worst",
            "num_threads": 1,
        },
    }


# ----------------------------------------------------------------------------- round trip


def test_yaml_round_trip_is_exact(tmp_path: Path) -> None:
    config = config_from_dict(full_config())
    text = config_to_yaml(config)
    assert config_from_dict(yaml.safe_load(text)) == config
    # through a file too: anchored paths are absolute already, so they do not move
    anchored = load_config(write_yaml(tmp_path / "run.yaml", full_config()))
    (tmp_path / "saved").mkdir()
    save_config(anchored, tmp_path / "saved" / "config.yaml")
    again = load_config(tmp_path / "saved" / "config.yaml")
    assert again == anchored
    assert again.task("mine").source.paths["train"] == str(tmp_path / "data/train.csv")
    assert config_to_yaml(again) == config_to_yaml(anchored)


def test_round_trip_keeps_types_and_values() -> None:
    config = config_from_dict(full_config())
    assert isinstance(config, RunConfig)
    assert config.model.pooling == "cls" and config.model.freeze_layers == 2
    assert config.training.sampler.options == {"temperature": 3.0}
    assert config.training.checkpoint_every == 2 and config.training.num_threads == 1
    mine = config.task("mine")
    assert mine.type == "classification" and mine.metrics == ["macro_f1"]
    plain = yaml.safe_load(config_to_yaml(config))
    assert plain["tasks"][2]["type"] == "classification"  # enums are written as values
    assert plain["training"]["learning_rate"] == 1e-4


def test_defaults_fill_missing_sections() -> None:
    config = config_from_dict({"tasks": ["snli"]})
    assert config.training.max_steps == 1000 and config.training.sampler.name == "uniform"
    assert config.model.encoder == "minilm"
    assert config.task("snli").metrics == ["accuracy"]


# ----------------------------------------------------------------------------- overrides


def test_overrides_set_nested_keys_as_yaml_values(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", {"tasks": ["snli"], "training": {"max_steps": 9}})
    config = load_config(
        path,
        [
            "training.max_steps=50",
            "model.dropout=0.3",
            "seed=7",
            "training.sampler.name=temperature",
            "training.sampler.options.temperature=1.5",
            "training.checkpoint_every=null",
            "output_dir=out/a=b",
        ],
    )
    assert config.training.max_steps == 50
    assert config.model.dropout == 0.3 and config.seed == 7
    assert config.training.sampler.name == "temperature"
    assert config.training.sampler.options == {"temperature": 1.5}
    assert config.training.checkpoint_every is None
    assert config.output_dir == "out/a=b"  # only the first '=' splits


def test_numbers_in_exponent_form_read_as_numbers(tmp_path: Path) -> None:
    """YAML 1.1 reads 5e-5 (no dot) as text; a float key takes the number meant."""
    text = "tasks: [snli]\ntraining: {learning_rate: 5e-5, weight_decay: 1E-2}\n"
    (tmp_path / "c.yaml").write_text(text)
    config = load_config(tmp_path / "c.yaml", ["model.dropout=2e-1"])
    assert config.training.learning_rate == 5e-5 and config.training.weight_decay == 0.01
    assert config.model.dropout == 0.2
    with pytest.raises(ConfigError, match="key 'training.learning_rate': expected a number"):
        load_config(tmp_path / "c.yaml", ["training.learning_rate=fast"])


def test_overrides_can_replace_the_task_list(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", {"tasks": ["snli"]})
    config = load_config(path, ["tasks=[rte, {name: stsb, max_length: 64}]"])
    assert [t.name for t in config.tasks] == ["rte", "stsb"]
    assert config.task("stsb").max_length == 64


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.max_steps", "expected KEY=VALUE"),
        ("training.max_steps=[1", "the value is not valid YAML"),
        ("seed.x=1", "key 'seed' does not hold a mapping"),
        ("training.lerning_rate=1", "unknown key 'training.lerning_rate' (known keys: max_steps"),
        ("training.max_steps=ten", "key 'training.max_steps': expected an integer, got 'ten'"),
    ],
)
def test_bad_overrides_name_the_key(tmp_path: Path, override: str, message: str) -> None:
    path = write_yaml(tmp_path / "c.yaml", {"tasks": ["snli"], "seed": 1})
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_apply_override_builds_missing_mappings() -> None:
    data: dict[str, Any] = {}
    apply_override(data, "a.b.c=1")
    assert data == {"a": {"b": {"c": 1}}}


# ----------------------------------------------------------------------------- task refs


def test_task_by_name_is_the_registered_spec() -> None:
    config = config_from_dict({"tasks": ["snli"]})
    assert config.tasks[0] == get_task("snli")


def test_task_name_with_overrides_keeps_the_rest() -> None:
    config = config_from_dict(
        {"tasks": [{"name": "snli", "max_train_examples": 2000, "max_length": 64}]}
    )
    task, base = config.tasks[0], get_task("snli")
    assert task.max_train_examples == 2000 and task.max_length == 64
    assert task.labels == base.labels and task.source == base.source
    assert get_task("snli").max_train_examples is None  # the registry is not changed


def test_inline_task() -> None:
    task = config_from_dict({"tasks": [dict(INLINE)]}).tasks[0]
    assert task.name == "mine" and task.labels == ["neg", "pos"]
    assert task.source.paths == {"train": "data/train.csv", "dev": "/abs/dev.csv"}


def test_task_file_with_overrides_beside_it(tmp_path: Path) -> None:
    write_yaml(tmp_path / "tasks" / "mine.yaml", INLINE)
    path = write_yaml(
        tmp_path / "run.yaml", {"tasks": [{"file": "tasks/mine.yaml", "max_length": 64}]}
    )
    task = load_config(path).tasks[0]
    assert task.name == "mine" and task.max_length == 64
    assert task.source.paths["dev"] == "/abs/dev.csv"
    # data paths inside a task file are relative to the task file's own folder
    assert task.source.paths["train"] == str(tmp_path / "tasks" / "data" / "train.csv")


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        (["snlii"], "key 'tasks[0]': unknown task 'snlii' (did you mean snli"),
        ([{"name": "rtee", "max_length": 64}], "key 'tasks[0].name': unknown task 'rtee'"),
        ([{"name": "snli", "max_lenght": 64}], "unknown key 'tasks[0].max_lenght'"),
        (
            [{**INLINE, "type": "classifcation"}],
            "key 'tasks[0].type': 'classifcation' is not allowed (allowed: 'classification'",
        ),
        ([{"file": "nope.yaml"}], "nope.yaml: file not found"),
        (["snli", "snli"], "key 'tasks[1].name': task 'snli' appears twice"),
        ([], "key 'tasks': at least one task is required"),
        ([3], "key 'tasks[0]': expected a task name or a mapping, got 3"),
    ],
)
def test_bad_task_references(tmp_path: Path, tasks: list[Any], message: str) -> None:
    path = write_yaml(tmp_path / "run.yaml", {"tasks": tasks})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert str(info.value).startswith(str(path)) or "nope.yaml" in str(info.value)


# ----------------------------------------------------------------------------- paths


def test_relative_data_paths_are_anchored_to_the_config_folder(tmp_path: Path) -> None:
    tasks = [
        dict(INLINE),
        {
            "name": "sst2",
            "source": {"kind": "glue_dir", "root": "glue", "paths": {"train": "SST-2/train.tsv"}},
        },
    ]
    path = write_yaml(tmp_path / "configs" / "run.yaml", {"tasks": tasks})
    config = load_config(path)
    mine = config.task("mine").source
    assert mine.paths == {
        "train": str(tmp_path / "configs" / "data" / "train.csv"),
        "dev": "/abs/dev.csv",
    }
    glue = config.task("sst2").source
    assert glue.root == str(tmp_path / "configs" / "glue")
    assert glue.paths == {"train": "SST-2/train.tsv"}  # relative to root, left alone


def test_anchored_paths_are_absolute_with_a_relative_config_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_yaml(tmp_path / "configs" / "run.yaml", {"tasks": [dict(INLINE)]})
    monkeypatch.chdir(tmp_path)
    config = load_config("configs/run.yaml")
    train = Path(config.task("mine").source.paths["train"])
    assert train.is_absolute()
    assert train == tmp_path / "configs" / "data" / "train.csv"


def test_config_from_dict_without_a_folder_leaves_paths_alone() -> None:
    config = config_from_dict({"tasks": [dict(INLINE)]})
    assert config.task("mine").source.paths["train"] == "data/train.csv"
    assert to_dict(config)["tasks"][0]["source"]["paths"]["train"] == "data/train.csv"


def test_doc_stride_is_checked_for_span_qa_only() -> None:
    short = config_from_dict({"tasks": [{**INLINE, "max_length": 32, "doc_stride": 64}]}).tasks[0]
    assert short.max_length == 32  # a classification task ignores doc_stride
    qa = {
        "name": "qa",
        "type": "span_qa",
        "text_columns": ["question", "context"],
        "label_column": "answers",
        "max_length": 32,
        "source": {"paths": {"train": "qa.jsonl"}},
    }
    for bad in (32, 40, 0):  # an explicit value is kept, and checked
        with pytest.raises(ConfigError) as error:
            config_from_dict({"tasks": [{**qa, "doc_stride": bad}]})
        message = str(error.value)
        assert "\n" not in message
        assert message == "key 'tasks[0].doc_stride': must be between 1 and max_length - 1"
    assert config_from_dict({"tasks": [{**qa, "doc_stride": 8}]}).tasks[0].doc_stride == 8


def test_unset_doc_stride_follows_max_length() -> None:
    from camtl.tasks.kinds.span_qa import doc_stride

    # a built-in QA task with a shorter max_length and no doc_stride of its own
    task = config_from_dict({"tasks": [{"name": "wnut16_qa", "max_length": 64}]}).tasks[0]
    assert task.doc_stride is None
    assert doc_stride(task) == 32
    assert doc_stride(get_task("wnut16_qa")) == 64  # max_length 128
    smallest = config_from_dict({"tasks": [{"name": "wnut16_qa", "max_length": 8}]}).tasks[0]
    assert doc_stride(smallest) == 4


def test_apply_override_indexes_lists() -> None:
    data = {"tasks": ["snli", {"name": "vader"}]}
    apply_override(data, "tasks[0].train_fraction=0.1")
    apply_override(data, "tasks[1].max_length=64")
    assert data["tasks"] == [
        {"name": "snli", "train_fraction": 0.1},
        {"name": "vader", "max_length": 64},
    ]
    with pytest.raises(ConfigError, match=r"key 'tasks' has no item 2 \(2 items\)"):
        apply_override(data, "tasks[2].max_length=64")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"model": {"camtl": {"generators": "shard"}}},
            "key 'model.camtl.generators': 'shard' is not allowed (allowed: 'per_layer', 'shared')",
        ),
        (
            {"model": {"architecture": "ca-mtl"}},
            "key 'model.architecture': 'ca-mtl' is not allowed (allowed: 'camtl', 'plain')",
        ),
        (
            {"training": {"batch_mode": "single"}},
            "key 'training.batch_mode': 'single' is not allowed (allowed: 'mixed', 'single_task')",
        ),
        (
            {"training": {"select_by": "best"}},
            "key 'training.select_by': 'best' is not allowed (allowed: 'mean', 'worst')",
        ),
    ],
)
def test_choices_are_checked_by_their_types(section: dict, message: str) -> None:
    """Option choices are Literal types: the converter names the key and the choices."""
    with pytest.raises(ConfigError) as info:
        config_from_dict({"tasks": ["snli"], **section})
    assert str(info.value) == message
