"""`camtl` command line: parse, call the library, print. User errors exit 2 in one line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from camtl.errors import CamtlError
from camtl.validation import flag, require


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # huggingface_hub prints its warnings (a retry of an unreachable hub) through a handler
    # of its own and again through ours: once is enough, with our prefix
    logging.getLogger("huggingface_hub").handlers.clear()
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # per-file checkpoint chatter
    for client in ("httpx", "httpx2"):  # a line per request of huggingface_hub's downloads
        logging.getLogger(client).setLevel(logging.WARNING)


def cmd_train(args: argparse.Namespace) -> int:
    from camtl.config import load_config
    from camtl.training import train

    overrides = list(args.set or [])
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    config = load_config(args.config, overrides)
    command = "camtl " + " ".join(sys.argv[1:]) if sys.argv else None
    train(config, resume=args.resume, overwrite=args.overwrite, command=command)
    return 0


def _evaluation_dir(args: argparse.Namespace, run_dir: Path) -> Path:
    """Where ``camtl evaluate`` writes its reports: ``--output-dir``, else the run
    directory; a model from the hub sits in huggingface_hub's cache, no place for them, so
    its reports go to ``./eval-NAMESPACE--NAME`` (``@REVISION`` appended when given)."""
    import re

    from camtl.hub_models import from_hub

    if args.output_dir:
        return Path(args.output_dir)
    if not from_hub(args.run_dir):
        return run_dir
    name = "eval-" + args.run_dir.replace("/", "--")
    if args.revision:
        name += "@" + re.sub(r"[^\w.-]", "-", args.revision)
    return Path(name)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from camtl.device import resolve_device
    from camtl.hub_models import resolve_model

    device = resolve_device(args.device)
    if args.zero_shot:
        require(device == "cpu", flag("--device", args.device), "--zero-shot runs on the CPU only")
    run_dir = resolve_model(args.run_dir, args.revision)
    output_dir = _evaluation_dir(args, run_dir)
    if args.zero_shot:
        from camtl.transfer import zero_shot_report

        zero_shot_report(run_dir, Path(args.zero_shot), args.batch_size, output_dir)
    else:
        from camtl.evaluation.runs import evaluate_run

        evaluate_run(run_dir, args.split, args.batch_size, device, output_dir, args.run_dir)
    if output_dir != run_dir:
        print(f"reports written to {output_dir}")
    return 0


def cmd_add_task(args: argparse.Namespace) -> int:
    from camtl.transfer import AdaptOptions, add_task

    run_dir = Path(args.run_dir)
    task_file = Path(args.task_file)
    output = Path(args.output or f"{run_dir.as_posix().rstrip('/')}+{task_file.stem}")
    opts = AdaptOptions(
        init=args.init,
        fraction=args.fraction,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        joint=args.joint,
        seed=args.seed,
    )
    add_task(
        run_dir,
        task_file,
        output,
        opts,
        overwrite=args.overwrite,
        command="camtl " + " ".join(sys.argv[1:]),
    )
    print(f"\nrun directory: {output}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from camtl.device import resolve_device
    from camtl.hub_models import resolve_model
    from camtl.predict import is_stdout, predict_file

    resolve_device(args.device)  # a bad --device is refused before any download
    summary = predict_file(
        resolve_model(args.run_dir, args.revision),
        args.task,
        Path(args.input),
        args.output,
        args.batch_size,
        on_bad_rows=args.on_bad_rows,
        device=args.device,
    )
    # with --output - the predictions are standard output: the summary goes to stderr
    out = sys.stderr if is_stdout(args.output) else sys.stdout
    print(f"wrote {summary.predicted} predictions to {args.output}", file=out)
    if summary.skipped:
        print(
            f"skipped {summary.skipped} unreadable records (their lines hold the error)", file=out
        )
    return 0


def cmd_baseline_single_task(args: argparse.Namespace) -> int:
    from camtl.baseline import BaselineOptions, run_single_task_baselines
    from camtl.config import load_config
    from camtl.evaluation.compare import format_comparison

    tasks = _task_list(args.tasks)  # the flags first, then the file
    config = load_config(args.config, list(args.set or []))
    options = BaselineOptions(
        output_root=Path(args.output_root) if args.output_root else None,
        tasks=tasks,
        architecture=args.architecture,
        max_steps=args.max_steps,
        overwrite=args.overwrite,
        folds=args.folds,
    )
    command = "camtl " + " ".join(sys.argv[1:]) if sys.argv else None
    run_dirs = run_single_task_baselines(config, options, command)
    print()
    print(format_comparison(run_dirs, "dev", False, False))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from camtl.device import resolve_device
    from camtl.hub_models import resolve_model
    from camtl.serving.hosts import parse_allowed_hosts
    from camtl.serving.server import check_can_listen, check_flags, resolve_api_key, serve

    # bad flags, and a port already taken, are refused before any download
    parse_allowed_hosts(args.allowed_hosts, args.host)
    api_key = resolve_api_key(args.api_key, os.environ)
    check_flags(
        args.port,
        args.max_batch_tokens,
        args.max_wait_ms,
        args.max_body_bytes,
        args.max_inputs,
        args.max_queue,
    )
    check_can_listen(args.host, args.port)
    resolve_device(args.device)
    serve(
        resolve_model(args.run_dir, args.revision),
        host=args.host,
        port=args.port,
        max_batch_tokens=args.max_batch_tokens,
        max_wait_ms=args.max_wait_ms,
        max_body_bytes=args.max_body_bytes,
        max_inputs=args.max_inputs,
        max_queue=args.max_queue,
        api_key=api_key,
        device=args.device,
        allowed_hosts=args.allowed_hosts,
    )
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from camtl.hub import push_run

    url = push_run(
        Path(args.run_dir),
        args.repo_id,
        private=args.private,
        token=args.token,
        endpoint=args.endpoint,
        commit_message=args.message,
    )
    print(f"pushed {args.run_dir} -> {url}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from camtl.export import export_onnx, parity_of
    from camtl.quantize import MAX_DROP, ParityError, format_parity

    for name, given in (
        ("--max-drop", args.max_drop is not None),
        ("--accept-drop", args.accept_drop),
    ):
        require(args.quantize == "int8" or not given, name, "applies to --quantize int8 only")
    if args.max_drop is not None:
        require(args.max_drop >= 0, flag("--max-drop", args.max_drop), "must be >= 0 (points)")
    try:
        path = export_onnx(
            Path(args.run_dir),
            Path(args.output),
            overwrite=args.overwrite,
            quantize=args.quantize,
            max_drop=MAX_DROP if args.max_drop is None else args.max_drop,
            accept_drop=args.accept_drop,
        )
    except ParityError as exc:
        print(format_parity(exc.table))
        raise
    if args.quantize == "int8":
        print(format_parity(parity_of(path.parent)))
    print(f"exported {args.run_dir} -> {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from camtl.evaluation.compare import format_comparison

    print(
        format_comparison([Path(d) for d in args.run_dirs], args.split, args.markdown, args.by_seed)
    )
    return 0


def cmd_analyze_covsim(args: argparse.Namespace) -> int:
    from camtl.analysis.covsim import analyze_covsim

    analyze_covsim(Path(args.run_dir), args.split, args.max_examples)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from camtl.evaluation.html_report import screenshot, write_html_report

    path = write_html_report(
        [Path(d) for d in args.run_dirs], Path(args.output), args.split, args.title, args.by_seed
    )
    print(f"wrote {path}")
    if args.screenshot:
        print(f"wrote {screenshot(path, Path(args.screenshot))}")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    import json

    from camtl.modeling.accounting import count_parameters, format_counts

    options = _encoder_options(args.architecture, _params_options(args))
    counts = count_parameters(args.model, args.tasks, args.architecture, args.labels, options)
    print(json.dumps(counts) if args.json else format_counts(counts))
    return 0


def _params_options(args: argparse.Namespace) -> dict[str, Any]:
    """The encoder kind's options ``camtl params`` was given: ``--option KEY=VALUE`` and
    the shorthands of options with those names (CA-MTL's)."""
    import yaml

    values: dict[str, Any] = {}
    for item in args.option or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise CamtlError(f"--option {item!r}: expected KEY=VALUE (e.g. generators=per_layer)")
        values[key.strip()] = yaml.safe_load(raw)
    for key in ("max_length", "generators", "task_embedding_dim"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    return values


def _encoder_options(architecture: str, values: dict[str, Any]) -> Any:
    """``values`` as the options of encoder kind ``architecture`` (its ``Options``
    dataclass); ConfigError names a key it does not have."""
    import dataclasses

    from camtl.modeling.shared_encoder import encoder_kind
    from camtl.structured import from_dict

    kind = encoder_kind(architecture)
    if values and not dataclasses.fields(kind.Options):
        raise CamtlError(
            f"params: encoder kind {architecture!r} has no options (given: {', '.join(values)})"
        )
    return from_dict(kind.Options, values, f"model.{architecture}", "params")


class _Registered:
    """argparse choices read from a registry when first needed, so that building the
    parser (``camtl --help``, every command) does not import the model code (the option
    needs a ``metavar``: argparse lists the choices of one without it as it is added)."""

    def __init__(self, names: Callable[[], list[str]], *extra: str) -> None:
        self._names = names
        self._extra = extra

    def _all(self) -> list[str]:
        return [*self._names(), *self._extra]

    def __contains__(self, value: object) -> bool:
        return value in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())


def _encoder_names() -> list[str]:
    from camtl.modeling.shared_encoder import encoder_names  # registers the built-in kinds

    return encoder_names()


def _data_fetch_help() -> str:
    from camtl.data.assets import ENCODERS, default_encoders

    defaults = default_encoders()
    optional = [alias for alias in ENCODERS if alias not in defaults]
    return (
        f"offline tasks and encoders ({', '.join(ENCODERS)}); default: every task and "
        f"{', '.join(defaults)}" + (f"; {', '.join(optional)} only when named" if optional else "")
    )


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from camtl.data.offline import fetch_tasks

    fetch_tasks(args.names or None)  # an unknown name is refused before any download
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    from camtl.data.catalog import format_task_list

    print(format_task_list())
    return 0


RUN_DIR_HELP = "a finished run directory (the output_dir of camtl train)"
MODEL_HELP = (
    "a finished run directory, or NAMESPACE/NAME: a model pushed to the Hugging Face hub "
    "(camtl push), downloaded into its cache (a local folder of that name wins)"
)


def _task_list(text: str | None) -> list[str] | None:
    """``--tasks a,b`` (spaces allowed); an empty list is refused, not read as every task."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    require(names, flag("--tasks", text), "names no task (comma-separated task names)")
    return names


def _count(text: str) -> int:
    """An argparse type: a whole number >= 1 (a batch size, a number of steps); anything else
    is refused by argparse in one line naming the flag, exit status 2."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _add_revision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--revision",
        help="with a model from the hub: the branch, tag or commit to use (default: the "
        "repository's default branch)",
    )


def _add_device(parser: argparse.ArgumentParser) -> None:
    from camtl.device import DEVICE_HELP

    parser.add_argument("--device", default="cpu", metavar="DEVICE", help=DEVICE_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camtl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, help="what to do")

    p = sub.add_parser("train", help="train a multi-task model from a YAML config")
    p.add_argument("config", help="run config YAML (see configs/)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set training.max_steps=50",
    )
    p.add_argument("--output-dir", help="run directory (overrides output_dir)")
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a trained run on a split")
    p.add_argument("run_dir", metavar="MODEL", help=MODEL_HELP)
    _add_revision(p)
    p.add_argument("--split", choices=("dev", "test"), default="dev", help="split to score")
    p.add_argument(
        "--output-dir",
        help="folder of the reports, eval_SPLIT.{json,md} (or zero_shot_TASK.{json,md}) "
        "(default: the run directory; for a model from the hub, which stays untouched in the "
        "cache: ./eval-NAMESPACE--NAME, with @REVISION when given)",
    )
    p.add_argument("--batch-size", type=_count, default=64, help="examples per forward pass")
    p.add_argument(
        "--zero-shot",
        metavar="TASK.yaml",
        help="score a new task's dev split with each trained task embedding (CPU only)",
    )
    _add_device(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("add-task", help="add a task to a trained model and adapt to it")
    p.add_argument("run_dir", help="the trained run to extend (left unchanged)")
    p.add_argument("task_file", help="the task: a YAML definition, or {name: KNOWN_TASK}")
    p.add_argument(
        "--init",
        default="auto",
        help="new task embedding: random, xavier, "
        "copy:TASK, or auto (the trained task whose probe scores best on the new dev; default)",
    )
    p.add_argument("--fraction", type=float, help="share of the task's training data (0-1]")
    p.add_argument("--steps", type=_count, help="optimizer steps (default: 3 epochs, 10-300)")
    p.add_argument(
        "--batch-size", type=_count, default=32, help="examples per optimizer step (default: 32)"
    )
    p.add_argument("--lr", type=float, help="learning rate (default 1e-3; joint: the run's)")
    p.add_argument(
        "--joint",
        action="store_true",
        help="also train the run's shared "
        "parameters with its own tasks (changes their predictions)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=12,
        help="seed of the new head, the task embedding row and the data order (default: 12)",
    )
    p.add_argument("--output", help="new run directory (default: RUN_DIR+TASKFILE)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_add_task)

    p = sub.add_parser("predict", help="predict one task on a JSONL/CSV/TSV file")
    p.add_argument("run_dir", metavar="MODEL", help=MODEL_HELP + ", or an ONNX export")
    _add_revision(p)
    p.add_argument("--task", required=True, help="the task to predict (one of the run's)")
    p.add_argument("--input", required=True, help="records with the task's text columns")
    p.add_argument(
        "--output", required=True, help="JSONL output, one prediction per line (-: stdout)"
    )
    p.add_argument("--batch-size", type=_count, default=64, help="inputs per forward pass")
    p.add_argument(
        "--on-bad-rows",
        choices=("error", "skip"),
        default="error",
        help="a record the task cannot read: stop naming its row and write nothing (error), "
        'or write {"row": N, "error": ...} in its place and go on (skip)',
    )
    _add_device(p)
    p.set_defaults(func=cmd_predict)

    baseline = sub.add_parser("baseline", help="baseline runs to compare a config against")
    baseline_sub = baseline.add_subparsers(
        dest="baseline_command", required=True, help="which baseline"
    )
    p = baseline_sub.add_parser(
        "single-task",
        help="one single-task run per task of a config (same encoder, data and settings)",
    )
    p.add_argument("config", help="the multi-task run config YAML")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key first"
    )
    p.add_argument("--output-root", help="folder of the runs (default: <output_dir>_single_task)")
    p.add_argument("--tasks", help="comma-separated task names (default: every task)")
    p.add_argument(
        "--architecture",
        choices=_Registered(_encoder_names, "keep"),
        metavar="KIND",
        default="plain",
        help="%(choices)s; plain: the encoder fully fine-tuned (default); keep: the config's "
        "model section",
    )
    p.add_argument("--max-steps", type=_count, help="steps per run (default: the config's)")
    p.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="K cross-fitted runs per task, <task>/fold_<i> trained without fold i of train: "
        "teachers for training.distillation whose outputs on each example come from a run "
        "that never saw it (default root: <output_dir>_cross_fit)",
    )
    p.add_argument("--overwrite", action="store_true", help="train finished runs again")
    p.set_defaults(func=cmd_baseline_single_task)

    p = sub.add_parser("serve", help="serve every task of a trained run over HTTP")
    p.add_argument("run_dir", metavar="MODEL", help=MODEL_HELP + ", or an ONNX export")
    _add_revision(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    p.add_argument(
        "--max-batch-tokens", type=int, default=8192, help="padded tokens per forward pass"
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long a request waits for others to share its forward pass",
    )
    p.add_argument(
        "--max-body-bytes", type=int, default=1_000_000, help="largest request body; then 413"
    )
    p.add_argument("--max-inputs", type=int, default=256, help="records per request")
    p.add_argument("--max-queue", type=int, default=256, help="requests waiting; then 503")
    p.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' on /v1/* and /metrics "
        "(default: $CAMTL_API_KEY; unset: no check)",
    )
    p.add_argument(
        "--allowed-hosts",
        metavar="NAMES",
        help="comma-separated Host names answered besides localhost ('*.example.com'; '*': "
        "any). Default: only localhost when bound to a loopback address, else any",
    )
    _add_device(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("push", help="upload a finished run to the Hugging Face hub")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("repo_id", help="NAMESPACE/NAME of the model repository")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--token", help="hub token (default: $HF_TOKEN or hf auth login)")
    p.add_argument("--endpoint", help="hub URL (default: $HF_ENDPOINT or huggingface.co)")
    p.add_argument("--message", help="commit message")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("export", help="export a trained run as one ONNX graph")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (only onnx)")
    p.add_argument("--output", required=True, help="folder of the export")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output")
    p.add_argument(
        "--quantize",
        choices=("none", "int8"),
        default="none",
        help="int8: write the graph with int8 weights (onnxruntime dynamic quantisation), "
        "once its primary dev score on every task is within --max-drop points of the fp32 "
        "model's; needs the run's dev data (default: none, the fp32 graph)",
    )
    p.add_argument(
        "--max-drop",
        type=float,
        metavar="POINTS",
        help="with --quantize int8: the most points of a task's primary dev score the int8 "
        "graph may lose against the fp32 model before the export is refused, exit status 3 "
        "(default: 1.0)",
    )
    p.add_argument(
        "--accept-drop",
        action="store_true",
        help="with --quantize int8: write the export even when a task loses more than "
        "--max-drop points (the table is still printed and kept in export.json)",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compare", help="per-task scores of several runs side by side")
    p.add_argument("run_dirs", nargs="+", help="run directories, one column each")
    p.add_argument(
        "--split", choices=("dev", "test"), default="dev", help="split of the scores (default: dev)"
    )
    p.add_argument("--markdown", action="store_true", help="a Markdown table")
    p.add_argument(
        "--by-seed",
        action="store_true",
        help="one row per configuration: runs "
        "differing only in their seed shown as mean ± standard deviation",
    )
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("params", help="parameter counts of a model for N tasks (no weights)")
    p.add_argument("--model", default="minilm", help="hub name, folder with config.json, or minilm")
    p.add_argument("--tasks", type=int, default=9, help="number of tasks")
    p.add_argument(
        "--architecture",
        choices=_Registered(_encoder_names),
        metavar="KIND",
        default="camtl",
        help="the encoder kind (model.architecture): %(choices)s (default: camtl)",
    )
    p.add_argument("--labels", type=_count, default=3, help="classes per task head")
    p.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="an option of the encoder kind (model.<architecture>.KEY), e.g. "
        "--option bottleneck=large; repeatable",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="camtl: L for the attention blocks (default 128)",
    )
    p.add_argument(
        "--generators",
        default=None,
        help="camtl: FiLM generators shared across layers (shared, the default) or one per "
        "layer (per_layer)",
    )
    p.add_argument(
        "--task-embedding-dim",
        type=int,
        default=None,
        metavar="N",
        help="camtl: width of the task embedding z (default: the hidden size)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("report", help="one self-contained HTML page for several runs")
    p.add_argument("run_dirs", nargs="+", help="run directories to report on")
    p.add_argument("--output", default="report.html", help="HTML file to write")
    p.add_argument(
        "--split", choices=("dev", "test"), default="dev", help="split of the scores (default: dev)"
    )
    p.add_argument(
        "--title", default="camtl experiment report", help="the page's title and heading"
    )
    p.add_argument(
        "--by-seed",
        action="store_true",
        help="comparison table: runs differing only in their seed as one row",
    )
    p.add_argument(
        "--screenshot",
        metavar="PNG",
        help="also render the page in headless Chromium and save a screenshot (needs chromium)",
    )
    p.set_defaults(func=cmd_report)

    analyze = sub.add_parser("analyze", help="analyses of a trained run")
    analyze_sub = analyze.add_subparsers(dest="analyze_command", required=True, help="the analysis")
    p = analyze_sub.add_parser("covsim", help="covariance similarity between tasks (eq. 3.7)")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument(
        "--split", choices=("dev", "test"), default="dev", help="split to analyse (default: dev)"
    )
    p.add_argument("--max-examples", type=_count, default=500, help="examples per task")
    p.set_defaults(func=cmd_analyze_covsim)

    data = sub.add_parser("data", help="offline datasets and encoders")
    data_sub = data.add_subparsers(dest="data_command", required=True, help="what to do")
    p = data_sub.add_parser("fetch", help="download and split the offline assets")
    p.add_argument("names", nargs="*", metavar="NAME", help=_data_fetch_help())
    p.set_defaults(func=cmd_data_fetch)
    p = data_sub.add_parser(
        "list", help="every known task (type, sizes, labels, source) and offline encoder"
    )
    p.set_defaults(func=cmd_data_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="camtl: %(message)s",
        stream=sys.stderr,
    )
    _quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except CamtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
