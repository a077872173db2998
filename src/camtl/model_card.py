"""The model card of a run directory: README.md with Hugging Face metadata.

It says what the model does (its tasks, kinds, input fields and labels), how well (each
task's dev and test scores from the run's reports), what it is built on (encoder,
architecture, parameters) and how to load, predict with and serve it. Written when a run
finishes, by add-task, and again by ``camtl push`` with the repository's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from camtl import __version__
from camtl.fileio import atomic_write_text
from camtl.runfiles import MODEL_CARD_FILE, MODEL_FILE

# the Hugging Face pipeline tag closest to each task kind, for the card's tags
_KIND_TAGS = {
    "classification": "text-classification",
    "multi_label": "text-classification",
    "regression": "text-classification",
    "token_tagging": "token-classification",
    "span_qa": "question-answering",
    "multiple_choice": "multiple-choice",
}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _scores(report: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {} if report is None else dict(report.get("results", {}).get("tasks", {}))


def _is_hub_name(encoder: str) -> bool:
    return "/" in encoder and not Path(encoder).exists() and not encoder.startswith((".", "/"))


def _encoder_title_and_tags(architecture: str) -> tuple[str, list[str]]:
    """How the card names and tags a model of this encoder kind (the kind says it:
    ``SharedEncoder.title`` and ``tags``); a kind not registered here is "multi-task"."""
    from camtl.modeling.shared_encoder import ENCODERS  # registers the built-in kinds

    kind = ENCODERS.get(architecture)
    if kind is None:
        return "multi-task", []
    return kind.title or "multi-task", list(kind.tags)


def render_model_card(run_dir: Path, repo_id: str | None = None) -> str:
    meta = json.loads((run_dir / MODEL_FILE).read_text(encoding="utf-8"))
    tasks, labels, model = meta["tasks"], meta["labels"], meta["model"]
    title, encoder_tags = _encoder_title_and_tags(model["architecture"])
    dev = _scores(_read_json(run_dir / "report.json"))
    test = _scores(_read_json(run_dir / "report_test.json"))
    report = _read_json(run_dir / "report.json") or {}
    info = report.get("run_info", {})
    kinds = sorted({t["type"] for t in tasks})
    metadata: dict[str, Any] = {
        "library_name": "camtl",
        "tags": ["camtl", "multi-task", *encoder_tags]
        + sorted({_KIND_TAGS.get(k, k) for k in kinds}),
    }
    if _is_hub_name(model["encoder"]):
        metadata["base_model"] = model["encoder"]
    results = []
    for task in tasks:
        entry = dev.get(task["name"])
        if entry:
            metric = entry["primary_metric"]
            results.append(
                {
                    "task": {
                        "type": _KIND_TAGS.get(task["type"], task["type"]),
                        "name": task["name"],
                    },
                    "metrics": [
                        {
                            "type": metric,
                            "value": round(entry["scores"][metric], 4),
                            "name": f"dev {metric}",
                        }
                    ],
                }
            )
    if results:
        metadata["model-index"] = [{"name": repo_id or run_dir.name, "results": results}]
    name = repo_id or run_dir.name
    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {name}",
        "",
        f"One {title} model with "
        f"{len(tasks)} tasks on `{model['encoder']}`, trained with "
        "[camtl](https://pypi.org/project/camtl/): one shared encoder, one head per task, "
        "and every task servable from one process.",
        "",
        "## Tasks",
        "",
        "| task | kind | inputs | labels | metric | dev | test |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for task in tasks:
        entry, test_entry = dev.get(task["name"]), test.get(task["name"])
        metric = entry["primary_metric"] if entry else (task.get("metrics") or ["-"])[0]
        lines.append(
            f"| {task['name']} | {task['type']} | {', '.join(task['text_columns'])} | "
            f"{len(labels.get(task['name']) or []) or '-'} | {metric} | "
            f"{_score(entry, metric)} | {_score(test_entry, metric)} |"
        )
    parameters = info.get("parameters") or {}
    lines += ["", "## Model", ""]
    lines.append(f"- encoder: `{model['encoder']}`, architecture `{model['architecture']}`")
    if parameters:
        lines.append(
            f"- parameters: {parameters.get('total', 0):,} in all, "
            f"{parameters.get('ratio', 0):.2f}x the bare encoder"
        )
    for key in ("precision", "steps_run", "stopped_by", "command"):
        if info.get(key) is not None:
            value = info[key]
            lines.append(
                f"- {key.replace('_', ' ')}: `{value}`"
                if key == "command"
                else f"- {key.replace('_', ' ')}: {value}"
            )
    # a pushed model is used by its name: camtl downloads it into the Hugging Face cache
    where = repo_id or str(run_dir)
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        f"pip install 'camtl-{__version__}-py3-none-any.whl[serve]'   # `make dist` in camtl's "
        "repository builds the wheel",
        f"camtl predict {where} --task {tasks[0]['name']} "
        "--input inputs.jsonl --output predictions.jsonl",
        f"camtl serve {where} --port 8000   # every task over HTTP",
        "```",
        "",
        "```python",
        "from camtl.modeling import MultiTaskModel",
        f"model = MultiTaskModel.from_pretrained({where!r})",
        "```",
        "",
        *(
            [
                "The first use downloads the model into the Hugging Face cache; `--revision` "
                "(`revision=` in Python) picks a branch, tag or commit, and `HF_HUB_OFFLINE=1` "
                "runs from the cache alone. `inputs.jsonl` holds one JSON record per line with "
                "the task's input fields.",
                "",
            ]
            if repo_id
            else []
        ),
        "Scores are on a 0-100 scale (correlations x 100); dev scores are those of the "
        "checkpoint the run selected, test scores of the same checkpoint.",
        "",
    ]
    return "\n".join(lines)


def _score(entry: dict[str, Any] | None, metric: str) -> str:
    if not entry or metric not in entry.get("scores", {}):
        return "-"
    return f"{entry['scores'][metric]:.2f}"


def write_model_card(run_dir: Path, repo_id: str | None = None) -> Path:
    path = run_dir / MODEL_CARD_FILE
    atomic_write_text(path, render_model_card(run_dir, repo_id))
    return path
