"""Bad user input, run as a user runs it: one ``error:`` line on stderr, exit status 2, no
traceback, and nothing left on disk that looks like a finished run (a finished run that was
there before is left byte for byte as it was).

A few cases run ``python -m camtl.cli`` in a subprocess (what a user sees, warnings and all);
the rest call ``camtl.cli.main`` in-process. One tiny training run (a subprocess, after a
failed first attempt into the same folder; both in a background thread) serves the
predict/evaluate cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from camtl.cli import main
from camtl.testing.cli import assert_user_error, cli_error

WORDS = (
    "the",
    "good",
    "bad",
    "movie",
    "film",
    "food",
    "dog",
    "cat",
    "john",
    "mary",
    "paris",
    "london",
    "very",
    "great",
    "awful",
)
TRUNCATION_WARNING = "examples were longer than max_length=16 tokens and were truncated"


# ----------------------------------------------------------------------------- helpers


def sentence(i: int, n: int = 5) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n))


def pair_rows(n: int = 16) -> list[dict[str, Any]]:
    return [
        {
            "premise": sentence(i),
            "hypothesis": sentence(i + 1),
            "label": "same" if i % 2 else "different",
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def pairs_task(train: str = "pairs.jsonl", **extra: Any) -> dict[str, Any]:
    return {
        "name": "pairs",
        "type": "classification",
        "text_columns": ["premise", "hypothesis"],
        "label_column": "label",
        "source": {"paths": {"train": train}},
        **extra,
    }


def config_dict(root: Path, encoder: Path, *tasks: dict[str, Any]) -> dict[str, Any]:
    return {
        "output_dir": str(root / "run"),
        "seed": 3,
        "model": {"encoder": str(encoder)},
        "tasks": list(tasks) or [pairs_task()],
        "training": {
            "max_steps": 2,
            "batch_size": 4,
            "eval_batch_size": 32,
            "eval_every": 2,
            "log_every": 1,
            "learning_rate": 1e-3,
        },
    }


def write_config(root: Path, data: Any, name: str = "config.yaml") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", "camtl.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def assert_no_run(run_dir: Path) -> None:
    """Nothing made: no folder at all (so no status.json, no model files)."""
    assert not run_dir.exists(), sorted(p.name for p in run_dir.iterdir())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def project(tmp_path: Path, tiny_encoder_dir: Path) -> tuple[Path, dict[str, Any]]:
    """A folder with a good pairs.jsonl and a good config dict (not yet written)."""
    write_jsonl(tmp_path / "pairs.jsonl", pair_rows())
    return tmp_path, config_dict(tmp_path, tiny_encoder_dir)


def train_error(
    capsys: pytest.CaptureFixture[str], root: Path, config: dict[str, Any], *parts: str
) -> str:
    """`camtl train` must fail in one line and leave no run folder behind."""
    line = cli_error(capsys, "train", str(write_config(root, config)), parts=parts)
    assert_no_run(Path(config["output_dir"]))
    return line


def _fail_then_train(root: Path, encoder: Path) -> dict[str, Any]:
    """A first attempt on a data file with a malformed line, then the same config once the
    file is fixed (no --overwrite). Some inputs are longer than max_length: a warning."""
    rows = pair_rows()
    for row in rows[:3]:
        row["premise"] = " ".join([row["premise"]] * 8)  # ~40 words > max_length 16
    good = "".join(json.dumps(r) + "\n" for r in rows)
    data = root / "pairs.jsonl"
    lines = good.splitlines(keepends=True)
    data.write_text("".join(lines[:4]) + '{"premise": "good movie",\n' + "".join(lines[4:]))
    config = write_config(
        root, config_dict(root, encoder, pairs_task(max_length=16, labels=["different", "same"]))
    )
    failed = run_cli("train", str(config))
    failed_left_run_dir = (root / "run").exists()
    data.write_text(good)
    ok = run_cli("train", str(config))
    return {
        "root": root,
        "run": root / "run",
        "config": config,
        "data": data,
        "failed": failed,
        "failed_left_run_dir": failed_left_run_dir,
        "ok": ok,
    }


@pytest.fixture(scope="module")
def _background_training(
    tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path
) -> Iterator[Future[dict[str, Any]]]:
    """The two subprocess trainings take most of this file's time: they run in a thread,
    started by this file's first test, while the in-process cases go on (two cores)."""
    root = tmp_path_factory.mktemp("trained")
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(_fail_then_train, root, tiny_encoder_dir)


@pytest.fixture
def trained(_background_training: Future[dict[str, Any]]) -> dict[str, Any]:
    return _background_training.result(timeout=600)


# ----------------------------------------------------------------------------- config file
# (subprocess cases first: they overlap the background training)


@pytest.mark.usefixtures("_background_training")  # starts it early (see the fixture)
def test_missing_config_file_subprocess(tmp_path: Path) -> None:
    result = run_cli("train", str(tmp_path / "nope.yaml"))
    assert_user_error(
        result.returncode, result.stderr, f"{tmp_path / 'nope.yaml'}", "file not found"
    )
    assert result.stdout == ""


def test_evaluate_a_folder_that_is_not_a_run_subprocess(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    result = run_cli("evaluate", str(tmp_path))  # `camtl evaluate` on a folder: not a run
    assert_user_error(
        result.returncode,
        result.stderr,
        f"{tmp_path}: not a camtl run directory (config.yaml missing)",
    )
    cli_error(
        capsys,
        "evaluate",
        str(tmp_path / "missing"),
        parts=(f"{tmp_path / 'missing'}: not a camtl run directory",),
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: permission bits do not stop reading",
)
def test_unreadable_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, {"tasks": ["snli"]})
    path.chmod(0)
    try:
        cli_error(capsys, "train", str(path), parts=(str(path), "cannot read"))
    finally:
        path.chmod(0o644)


def test_config_that_is_a_folder_or_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What the chmod-000 case proves, also as root: a config that cannot be read.
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    cli_error(capsys, "train", str(folder), parts=(str(folder), "cannot read"))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"tasks: [\xff\xfe]\n")
    cli_error(capsys, "train", str(binary), parts=(str(binary), "cannot read"))


def test_malformed_yaml_names_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, "seed: 1\ntasks: [snli\ntraining:\n  max_steps: 3\n")
    cli_error(
        capsys,
        "train",
        str(path),
        parts=(f"{path}: malformed YAML at line 3, column 9: expected ',' or ']'",),
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"optimizer": {"lr": 1}}, "unknown key 'optimizer' (known keys: output_dir, seed, model"),
        (
            {"training": {"lerning_rate": 0.1}},
            "unknown key 'training.lerning_rate' (known keys: max_steps, batch_size",
        ),
        (
            {"training": {"sampler": {"nmae": "uniform"}}},
            "unknown key 'training.sampler.nmae' (known keys: name, options)",
        ),
        (
            {"training": {"max_steps": "ten"}},
            "key 'training.max_steps': expected an integer, got 'ten'",
        ),
        (
            {"training": {"mixed_precision": "fp64"}},
            "key 'training.mixed_precision': 'fp64' is not allowed "
            "(allowed: 'auto', 'no', 'bf16', 'fp16')",
        ),
        ({"model": {"pooling": "max"}}, "key 'model.pooling': 'max' is not allowed"),
        ({"tasks": ["snlii"]}, "key 'tasks[0]': unknown task 'snlii' (did you mean snli"),
        (
            {"tasks": [pairs_task(type="clasification")]},
            "key 'tasks[0].type': 'clasification' is not allowed (allowed: 'classification'",
        ),
        ({"tasks": [pairs_task(lables=["a"])]}, "unknown key 'tasks[0].lables'"),
    ],
)
def test_config_errors_name_the_key(
    project: tuple[Path, dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    section: dict[str, Any],
    message: str,
) -> None:
    root, config = project
    for key, value in section.items():
        if isinstance(value, dict):
            config[key] = {**config.get(key, {}), **value}
        else:
            config[key] = value
    line = train_error(capsys, root, config, message)
    assert line.startswith(f"error: {root / 'config.yaml'}: ")


def test_a_max_length_longer_than_the_encoders_positions_is_refused_before_training(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    """The tiny BERT has 512 positions: a longer max_length would fail at the first long
    input, in training or, worse, only later in predict or serve."""
    root, config = project
    config["tasks"][0]["max_length"] = 600
    train_error(
        capsys,
        root,
        config,
        "key 'tasks[0].max_length' (task 'pairs'): 600, more than the 512 positions of the encoder",
        "at most 512",
    )


def test_bad_set_override(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    path = write_config(root, config)
    cli_error(
        capsys,
        "train",
        str(path),
        "--set",
        "training.max_steps=ten",
        parts=(str(path), "key 'training.max_steps': expected an integer"),
    )
    cli_error(
        capsys,
        "train",
        str(path),
        "--set",
        "training.lerning_rate=1",
        parts=("unknown key 'training.lerning_rate'",),
    )
    cli_error(
        capsys,
        "train",
        str(path),
        "--set",
        "training.max_steps",
        parts=("override 'training.max_steps': expected KEY=VALUE",),
    )
    assert_no_run(root / "run")


def test_unknown_sampler(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    config["training"]["sampler"] = {"name": "temperatur"}
    train_error(
        capsys,
        root,
        config,
        "key 'training.sampler.name': unknown sampler 'temperatur' (known: ",
        "temperature",
        "uniform",
    )


def test_bad_sampler_option(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    config["training"]["sampler"] = {"name": "temperature", "options": {"temprature": 2}}
    train_error(capsys, root, config, "unknown key 'training.sampler.options.temprature'")


def test_a_bad_balancer_option_is_named_before_the_run_folder_is_looked_at(
    trained: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The options are checked with the rest of the file: the error names the key, not the
    finished run the config points at."""
    config = yaml.safe_load(trained["config"].read_text())
    config["training"]["balancer"] = {"name": "famo", "options": {"learning_rat": 0.1}}
    path = write_config(trained["root"] / "bad", config)
    before = snapshot(trained["run"])
    cli_error(
        capsys,
        "train",
        str(path),
        parts=(f"{path}: unknown key 'training.balancer.options.learning_rat'",),
    )
    assert snapshot(trained["run"]) == before


# ----------------------------------------------------------------------------- data files


def test_missing_data_file(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    config["tasks"] = [pairs_task("pairz.jsonl")]
    train_error(capsys, root, config, f"{root / 'pairz.jsonl'}: file not found")


def test_missing_column_names_column_file_and_row(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    rows = pair_rows()
    del rows[2]["hypothesis"]
    write_jsonl(root / "pairs.jsonl", rows)
    train_error(
        capsys,
        root,
        config,
        f"{root / 'pairs.jsonl'}, row 3: missing column "
        "'hypothesis' (columns present: premise, label)",
    )


def test_label_not_in_the_label_list(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    rows = pair_rows()
    rows[4]["label"] = "maybe"
    write_jsonl(root / "pairs.jsonl", rows)
    config["tasks"] = [pairs_task(labels=["different", "same"])]
    train_error(
        capsys,
        root,
        config,
        f"{root / 'pairs.jsonl'}, row 5: label 'maybe' in "
        "column 'label' is not one of the task's labels (different, same)",
    )


def test_empty_train_split(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    (root / "empty.jsonl").write_text("\n")
    config["tasks"] = [pairs_task("empty.jsonl")]
    train_error(capsys, root, config, f"{root / 'empty.jsonl'}: split 'train' has no examples")


def test_empty_dev_split(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    (root / "dev.csv").write_text("premise,hypothesis,label\n")
    task = pairs_task()
    task["source"]["paths"]["dev"] = "dev.csv"
    config["tasks"] = [task]
    train_error(capsys, root, config, f"{root / 'dev.csv'}: split 'dev' has no examples")


def test_nan_regression_target(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    lines = ["text,score"] + [f"{sentence(i)},{i % 3}" for i in range(10)]
    lines[4] = f"{sentence(4)},nan"
    (root / "scores.csv").write_text("\n".join(lines) + "\n")
    config["tasks"] = [
        {
            "name": "scores",
            "type": "regression",
            "text_columns": ["text"],
            "label_column": "score",
            "source": {"paths": {"train": "scores.csv"}},
        }
    ]
    train_error(
        capsys,
        root,
        config,
        f"{root / 'scores.csv'}, row 5: regression target "
        "'nan' in column 'score' is not a finite number",
    )


def _tagging_task(**extra: Any) -> dict[str, Any]:
    return {
        "name": "ner",
        "type": "token_tagging",
        "text_columns": ["tokens"],
        "label_column": "tags",
        "source": {"paths": {"train": "ner.jsonl"}},
        **extra,
    }


def _pairs_with(row: int, **fields: Any) -> list[dict[str, Any]]:
    rows = pair_rows()
    rows[row - 1].update(fields)
    return rows


def _tags_with(row: int, tokens: Any, tags: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"tokens": ["john", "likes", "paris"], "tags": ["B-PER", "O", "B-LOC"]} for _ in range(8)
    ]
    rows[row - 1] = {"tokens": tokens, "tags": tags}
    return rows


def test_tokens_and_tags_of_different_lengths(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    write_jsonl(root / "ner.jsonl", _tags_with(6, ["mary", "sleeps", "today"], ["B-PER", "O"]))
    config["tasks"] = [_tagging_task()]
    train_error(
        capsys,
        root,
        config,
        f"{root / 'ner.jsonl'}, row 6: 3 tokens in column 'tokens' but 2 tags in column 'tags'",
    )


# (what, data file, its rows, the task, the error after "<file>, row N: ")
WRONGLY_TYPED_VALUES = [
    (
        "a lone surrogate, which no tokenizer encodes",
        "pairs.jsonl",
        _pairs_with(3, premise="bad \ud800 film"),
        pairs_task(),
        "row 3: column 'premise' is not valid Unicode (surrogates not allowed at character 4)",
    ),
    (
        "a label that is a list",
        "pairs.jsonl",
        _pairs_with(2, label=["same"]),
        pairs_task(),
        "row 2: column 'label' holds a list where a label (text or a number) belongs",
    ),
    (
        "a null token",
        "ner.jsonl",
        _tags_with(2, ["mary", None], ["B-PER", "O"]),
        _tagging_task(),
        "row 2: empty token at position 2 in column 'tokens'",
    ),
    (
        "a token that is a list",
        "ner.jsonl",
        _tags_with(4, [["mary"], "left"], ["B-PER", "O"]),
        _tagging_task(),
        "row 4: token at position 1 in column 'tokens' is a list, not a word",
    ),
    (
        "a tag that is a mapping",
        "ner.jsonl",
        _tags_with(5, ["mary", "left"], [{"B": "PER"}, "O"]),
        _tagging_task(),
        "row 5: column 'tags' holds a dict where a label (text or a number) belongs",
    ),
    (
        "multi-label labels in a mapping",
        "topics.jsonl",
        [{"text": sentence(i), "topics": ["a"] if i != 3 else {"a": 1}} for i in range(8)],
        {
            "name": "topics",
            "type": "multi_label",
            "text_columns": ["text"],
            "label_column": "topics",
            "source": {"paths": {"train": "topics.jsonl"}},
        },
        "row 4: column 'topics' holds a dict where a label (text or a number) belongs",
    ),
]


@pytest.mark.parametrize(
    ("data", "rows", "task", "message"),
    [case[1:] for case in WRONGLY_TYPED_VALUES],
    ids=[case[0] for case in WRONGLY_TYPED_VALUES],
)
def test_wrongly_typed_values_in_a_data_file_name_the_row(
    project: tuple[Path, dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    data: str,
    rows: list[dict[str, Any]],
    task: dict[str, Any],
    message: str,
) -> None:
    """Read as the server reads a request: never a class named "['same']" or a word "None"."""
    root, config = project
    write_jsonl(root / data, rows)
    config["tasks"] = [task]
    train_error(capsys, root, config, f"{root / data}, {message}")


def test_a_lone_surrogate_is_skipped_like_any_bad_row(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    write_jsonl(root / "pairs.jsonl", _pairs_with(3, premise="bad \ud800 film"))
    config["tasks"] = [
        pairs_task(source={"paths": {"train": "pairs.jsonl"}, "on_bad_rows": "skip"})
    ]
    assert main(["train", str(write_config(root, config))]) == 0
    skipped = (Path(config["output_dir"]) / "skipped_rows.jsonl").read_text()
    assert "row 3" in skipped and "not valid Unicode" in skipped


def test_a_column_named_twice_in_a_header(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    lines = ["premise,hypothesis,label,label"]
    lines += [f"{r['premise']},{r['hypothesis']},{r['label']},x" for r in pair_rows()]
    (root / "pairs.csv").write_text("\n".join(lines) + "\n")
    config["tasks"] = [pairs_task("pairs.csv")]
    train_error(capsys, root, config, f"{root / 'pairs.csv'}: column 'label' appears twice")


def test_a_label_named_twice_in_the_config(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    config["tasks"] = [pairs_task(labels=["same", "different", "same"])]
    train_error(capsys, root, config, "key 'tasks[0].labels[2]': label 'same' appears twice")


def test_one_row_of_train_and_no_dev_file(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    write_jsonl(root / "pairs.jsonl", pair_rows(1))
    train_error(
        capsys, root, config, f"{root / 'pairs.jsonl'}: 1 row in train, too few to carve a dev"
    )


def test_an_output_dir_that_is_a_file_is_left_alone(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    config["output_dir"] = str(root / "pairs.jsonl")
    before = (root / "pairs.jsonl").read_bytes()
    cli_error(
        capsys,
        "train",
        str(write_config(root, config)),
        parts=(f"{root / 'pairs.jsonl'}: output_dir is a file, not a folder",),
    )
    assert (root / "pairs.jsonl").read_bytes() == before


def test_malformed_jsonl_line(
    project: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, config = project
    text = (root / "pairs.jsonl").read_text().splitlines(keepends=True)
    text[6] = '{"premise": "good", "hypothesis": "bad" "label": "same"}\n'
    (root / "pairs.jsonl").write_text("".join(text))
    train_error(capsys, root, config, f"{root / 'pairs.jsonl'}, line 7: malformed JSON")


def test_bad_data_then_fixed_trains_without_overwrite_subprocess(trained: dict[str, Any]) -> None:
    failed = trained["failed"]
    assert_user_error(
        failed.returncode, failed.stderr, f"{trained['data']}, line 5: malformed JSON"
    )
    assert not trained["failed_left_run_dir"]  # the bad attempt made no run folder
    ok = trained["ok"]
    assert ok.returncode == 0, ok.stderr
    assert "Traceback" not in ok.stderr
    status = json.loads((trained["run"] / "status.json").read_text())
    assert status["status"] == "completed"


def test_long_inputs_are_truncated_with_a_warning(trained: dict[str, Any]) -> None:
    ok = trained["ok"]
    assert ok.returncode == 0, ok.stderr
    warnings = [line for line in ok.stderr.splitlines() if TRUNCATION_WARNING in line]
    assert warnings, ok.stderr
    assert any(
        line.startswith("camtl: task pairs, split train: ") and " of " in line for line in warnings
    ), warnings
    assert (trained["run"] / "model.safetensors").is_file()


def test_bad_data_leaves_a_finished_run_unchanged(
    trained: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    run, root = trained["run"], trained["root"]
    before = snapshot(run)
    config = yaml.safe_load(trained["config"].read_text())
    config["tasks"] = [pairs_task(str(root / "pairz.jsonl"))]
    bad = write_config(root / "other", config)
    # without --overwrite: refused before any data is read
    cli_error(capsys, "train", str(bad), parts=(f"{run}: holds a finished run",))
    # with --overwrite: the data error comes first and the old run is kept
    cli_error(
        capsys, "train", str(bad), "--overwrite", parts=(f"{root / 'pairz.jsonl'}: file not found",)
    )
    assert snapshot(run) == before


# ----------------------------------------------------------------------------- predict


def test_predict_unknown_task(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"premise": "a dog", "hypothesis": "a cat"}])
    out = tmp_path / "out.jsonl"
    cli_error(
        capsys,
        "predict",
        str(trained["run"]),
        "--task",
        "pair",
        "--input",
        str(inputs),
        "--output",
        str(out),
        parts=("--task: unknown task 'pair'", "(tasks: pairs)"),
    )
    assert not out.exists()


def test_predict_missing_input_file(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    cli_error(
        capsys,
        "predict",
        str(trained["run"]),
        "--task",
        "pairs",
        "--input",
        str(tmp_path / "nope.jsonl"),
        "--output",
        str(out),
        parts=(f"{tmp_path / 'nope.jsonl'}: file not found",),
    )
    assert list(tmp_path.iterdir()) == []


def test_predict_input_missing_the_text_column(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = write_jsonl(
        tmp_path / "in.jsonl",
        [{"premise": "a dog", "hypothesis": "a cat"}, {"premise": "a dog", "hypotesis": "a cat"}],
    )
    out = tmp_path / "out.jsonl"
    cli_error(
        capsys,
        "predict",
        str(trained["run"]),
        "--task",
        "pairs",
        "--input",
        str(inputs),
        "--output",
        str(out),
        parts=(f"{inputs}, row 2: missing column 'hypothesis'",),
    )
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # no .tmp either
    # an output that was already there is left as it was
    out.write_text("old\n")
    cli_error(
        capsys,
        "predict",
        str(trained["run"]),
        "--task",
        "pairs",
        "--input",
        str(inputs),
        "--output",
        str(out),
        parts=("row 2: missing column",),
    )
    assert out.read_text() == "old\n"


def _predict(run: Path, source: Path, out: Path, *extra: str) -> list[str]:
    return [
        "predict",
        str(run),
        "--task",
        "pairs",
        "--input",
        str(source),
        "--output",
        str(out),
        *extra,
    ]


def test_predict_an_input_with_no_records_names_the_input(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    for name, text in (
        ("empty.jsonl", ""),
        ("header.csv", "premise,hypothesis\n"),
        ("blank.jsonl", "\n\n"),
    ):
        source = tmp_path / name
        source.write_text(text)
        cli_error(
            capsys,
            *_predict(trained["run"], source, out),
            parts=(f"{source}: no records to predict",),
        )
        assert not out.exists()


def test_predict_refuses_an_output_that_is_a_folder_or_the_input(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"premise": "a dog", "hypothesis": "a cat"}])
    before = source.read_bytes()
    cli_error(
        capsys,
        *_predict(trained["run"], source, tmp_path),
        parts=(f"--output '{tmp_path}': is a folder, not a file",),
    )
    cli_error(
        capsys,
        *_predict(trained["run"], source, tmp_path / "." / "in.jsonl"),
        parts=("is the --input file",),
    )
    assert source.read_bytes() == before


def test_predict_a_csv_row_of_empty_cells_gets_its_error_not_silence(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every input row gets an answer or an error: a row of empty cells (``,``) is a record
    whose texts are empty, as in JSONL; a blank line (spaces only, here) is no record."""
    out = tmp_path / "out.jsonl"
    for name, separator in (("in.csv", ","), ("in.tsv", "\t")):
        source = tmp_path / name
        rows = ["premise", "hypothesis"], ["a man", "a dog"], ["", ""], ["  "], ["mary", "john"]
        source.write_text("".join(separator.join(row) + "\n" for row in rows))
        cli_error(
            capsys,
            *_predict(trained["run"], source, out),
            parts=(f"{source}, row 3: empty text in both columns",),
        )
        assert not out.exists()
        assert main(_predict(trained["run"], source, out, "--on-bad-rows", "skip")) == 0
        written = [json.loads(line) for line in out.read_text().splitlines()]
        assert [line["row"] for line in written] == [2, 3, 5]
        assert "label" in written[0] and "empty text" in written[1]["error"]
        out.unlink()


def test_predict_never_replaces_a_file_of_the_model_a_pipe_or_a_link(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The output is written atomically, but never over the model's own files; a pipe is
    written to (not replaced by a file), a symbolic link's target is replaced (not the
    link), and ``-`` is standard output."""
    run = trained["run"]
    source = write_jsonl(tmp_path / "in.jsonl", [{"premise": "a dog", "hypothesis": "a cat"}])
    meta = run / "camtl_model.json"
    before = meta.read_bytes()
    cli_error(
        capsys,
        *_predict(run, source, meta),
        parts=(f"--output '{meta}': is inside the model's folder {run}",),
    )
    assert meta.read_bytes() == before
    target = tmp_path / "kept" / "predictions.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert main(_predict(run, source, link)) == 0
    assert link.is_symlink() and "label" in json.loads(target.read_text())
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with ThreadPoolExecutor(1) as pool:
        read = pool.submit(fifo.read_text)  # opens the pipe's reading end
        assert main(_predict(run, source, fifo)) == 0
        assert "label" in json.loads(read.result(timeout=60))
    assert fifo.is_fifo()
    done = run_cli(*_predict(run, source, Path("-")))
    assert done.returncode == 0, done.stderr
    assert "label" in json.loads(done.stdout)  # standard output holds the predictions alone
    assert "wrote 1 predictions to -" in done.stderr
    log = tmp_path / "log.jsonl"  # `camtl predict ... --output /dev/stdout >> log.jsonl`
    log.write_text("earlier\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "camtl.cli", *_predict(run, source, Path("/dev/stdout"))]
    with log.open("a") as appended:
        subprocess.run(command, stdout=appended, env=env, timeout=300, check=True)
    earlier, predicted = log.read_text().splitlines()  # the summary went to stderr
    assert earlier == "earlier" and "label" in json.loads(predicted)
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    cli_error(capsys, *_predict(run, source, loop), parts=("a symbolic link that leads nowhere",))


def test_predict_refuses_an_output_that_cannot_be_made_and_replaces_files_under_dev_shm(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An --output under a file (not a folder) is refused before anything is predicted, in
    one line; a regular file is replaced whole wherever it lives (/dev/shm is tmpfs, not a
    device), so predicting twice leaves one copy of the predictions."""
    run = trained["run"]
    source = write_jsonl(tmp_path / "in.jsonl", [{"premise": "a dog", "hypothesis": "a cat"}])
    afile = tmp_path / "afile"
    afile.write_text("kept\n")
    cli_error(
        capsys,
        *_predict(run, source, afile / "out.jsonl"),
        parts=(f"--output '{afile / 'out.jsonl'}': cannot be made: {afile} is a file",),
    )
    assert afile.read_text() == "kept\n"
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        pytest.skip("no writable /dev/shm here")
    out = shm / f"camtl-test-{os.getpid()}-{tmp_path.name}.jsonl"
    try:
        for _ in range(2):
            assert main(_predict(run, source, out)) == 0
        assert len(out.read_text().splitlines()) == 1
    finally:
        out.unlink(missing_ok=True)


def test_predict_a_lone_surrogate_is_a_bad_row_and_every_row_bad_still_writes_their_errors(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    good = json.dumps({"premise": "a dog", "hypothesis": "a cat"})
    source.write_text(good + "\n" + '{"premise": "bad \\ud800", "hypothesis": "x"}\n')
    cli_error(
        capsys,
        *_predict(trained["run"], source, out),
        parts=("row 2: column 'premise' is not valid Unicode",),
    )
    assert main(_predict(trained["run"], source, out, "--on-bad-rows", "skip")) == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert "label" in written[0] and "not valid Unicode" in written[1]["error"]
    source.write_text('{"premise": "bad \\ud800", "hypothesis": "x"}\n{"premise": ""}\n')
    assert main(_predict(trained["run"], source, out, "--on-bad-rows", "skip")) == 0
    assert [sorted(json.loads(line)) for line in out.read_text().splitlines()] == [
        ["error", "row"]
    ] * 2


@pytest.mark.parametrize("command", ["predict", "evaluate", "add-task"])
def test_a_batch_size_below_one_is_refused_by_its_flag(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = {"predict": ["--task", "t", "--input", "i", "--output", "o"], "add-task": ["t.yaml"]}
    with pytest.raises(SystemExit) as exit_info:
        main([command, "some_run", *extra.get(command, []), "--batch-size", "0"])
    assert exit_info.value.code == 2
    assert "argument --batch-size: must be a positive integer, got 0" in capsys.readouterr().err


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_an_unfinished_run(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # config.yaml is written when training starts; the model only at the first evaluation
    (tmp_path / "config.yaml").write_bytes((trained["run"] / "config.yaml").read_bytes())
    cli_error(capsys, "evaluate", str(tmp_path), parts=(f"{tmp_path}: no saved model here",))
