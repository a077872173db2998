"""The Python half of bench/gpu_check.sh: carry the offline cache to a machine that cannot
download it, send a burst of concurrent requests to `camtl serve`, and gather the check's
figures into one JSON.

    python bench/gpu_check.py pack --out .gpu-cache [--cache DIR] [--config configs/demo.yaml]
    python bench/gpu_check.py unpack .gpu-cache --out DIR
    python bench/gpu_check.py burst --url URL --cache DIR --out burst.json [--requests 200]
    python bench/gpu_check.py summary --run RUN --device cuda --train-wall-s S
        --eval-wall-s S --burst burst.json --out gpu_check.json

``pack`` keeps the cache small enough to travel (the device tool carries 64 MiB with the
repository): each task's JSONL files gzipped (restored byte for byte: their sha256 in
meta.json still holds) and the encoder's fp32 weights stored in fp16, turned back into
fp32 by ``unpack``, with meta.json's size and sha256 of model.safetensors updated. The fp16
round trip changes each weight by at most 2^-11 of itself: harmless for a check of speed
and of the GPU path, but the encoder is not bit-identical to the fetched one.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

WEIGHTS = "model.safetensors"
PACKED_WEIGHTS = "model.fp16.safetensors"
ENCODER = Path("encoders") / "all-MiniLM-L6-v2"
PACK_NOTE = "PACKED.json"


# ------------------------------------------------------------------------ pack and unpack


def config_tasks(config: Path) -> list[str]:
    """The task names of a run config (entries given by name or as mappings)."""
    import yaml

    entries = yaml.safe_load(config.read_text(encoding="utf-8"))["tasks"]
    return [entry if isinstance(entry, str) else entry["name"] for entry in entries]


def _gzip_file(src: Path, dest: Path) -> None:
    with open(src, "rb") as raw, gzip.GzipFile(dest, "wb", compresslevel=9, mtime=0) as packed:
        shutil.copyfileobj(raw, packed, 1 << 20)


def _gunzip_file(src: Path, dest: Path) -> None:
    with gzip.open(src, "rb") as packed, open(dest, "wb") as raw:
        shutil.copyfileobj(packed, raw, 1 << 20)


def _convert_weights(src: Path, dest: Path, dtype_name: str) -> None:
    """Save the floating-point tensors of ``src`` as ``dtype_name``; others as they are."""
    import torch
    from safetensors.torch import load_file, save_file

    dtype = getattr(torch, dtype_name)
    tensors = load_file(str(src))
    save_file(
        {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}, str(dest)
    )


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def pack(cache: Path, out: Path, tasks: list[str]) -> int:
    """Write the packed cache of ``tasks`` and the encoder to ``out``; returns its bytes."""
    if out.exists():
        shutil.rmtree(out)
    encoder = cache / ENCODER
    if not (encoder / WEIGHTS).is_file():
        raise SystemExit(f"{encoder}: no encoder here (run `camtl data fetch` first)")
    shutil.copytree(encoder, out / ENCODER, ignore=shutil.ignore_patterns(WEIGHTS))
    _convert_weights(encoder / WEIGHTS, out / ENCODER / PACKED_WEIGHTS, "float16")
    for name in tasks:
        folder = cache / "tasks" / name
        if not (folder / "meta.json").is_file():
            raise SystemExit(f"{folder}: task {name} not fetched (run `camtl data fetch`)")
        (out / "tasks" / name).mkdir(parents=True)
        for path in folder.iterdir():
            if path.suffix == ".jsonl":
                _gzip_file(path, out / "tasks" / name / f"{path.name}.gz")
            elif path.is_file():
                shutil.copyfile(path, out / "tasks" / name / path.name)
    note = {"tasks": tasks, "encoder_weights": "fp16 copy of the fp32 weights (unpack restores)"}
    (out / PACK_NOTE).write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
    return _folder_bytes(out)


def unpack(packed: Path, out: Path) -> Path:
    """A camtl cache (``$CAMTL_CACHE``) in ``out`` from a folder ``pack`` wrote."""
    from camtl.data.assets import encoder_ready, read_meta, sha256_file, write_json

    if not (packed / PACK_NOTE).is_file():
        raise SystemExit(f"{packed}: not a packed cache ({PACK_NOTE} missing; see `pack`)")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(packed, out, ignore=shutil.ignore_patterns("*.gz", PACKED_WEIGHTS))
    for path in packed.rglob("*.gz"):
        _gunzip_file(path, out / path.relative_to(packed).with_suffix(""))
    encoder = out / ENCODER
    _convert_weights(packed / ENCODER / PACKED_WEIGHTS, encoder / WEIGHTS, "float32")
    meta = read_meta(encoder)
    if meta is None:
        raise SystemExit(f"{encoder}: meta.json missing from the packed cache")
    weights = encoder / WEIGHTS
    meta["files"][WEIGHTS] = {"size": weights.stat().st_size, "sha256": sha256_file(weights)}
    meta["unpacked_from_fp16"] = True
    write_json(encoder / "meta.json", meta)
    if not encoder_ready(encoder, deep=True):
        raise SystemExit(f"{encoder}: the unpacked encoder is incomplete")
    return out


# ------------------------------------------------------------------------ the request burst


def _http(
    method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 120.0
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_ready(url: str, seconds: float) -> None:
    """Return once ``GET /health`` answers 200; exit after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if _http("GET", f"{url}/health", timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url}: the server did not answer /health within {seconds:.0f} s")


def request_bodies(
    tasks: list[dict[str, Any]], cache: Path, requests: int, records: int
) -> list[dict[str, Any]]:
    """``requests`` bodies, round-robin over the served tasks, each with ``records`` dev
    records of its task (from the offline cache) holding the fields the task reads."""
    pools: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        path = cache / "tasks" / task["name"] / "dev.jsonl"
        if not path.is_file():
            continue
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:512]]
        pools[task["name"]] = [{f: row[f] for f in task["inputs"]} for row in rows]
    if not pools:
        raise SystemExit(f"{cache}: no dev split of any served task")
    names = sorted(pools)
    bodies = []
    for i in range(requests):
        pool = pools[names[i % len(names)]]
        start = (i // len(names)) * records
        chunk = [pool[(start + j) % len(pool)] for j in range(records)]
        bodies.append({"task": names[i % len(names)], "inputs": chunk})
    return bodies


def _batch_counters(metrics_text: str) -> tuple[float, float]:
    """(inputs, forward passes) so far, from the server's Prometheus text."""
    values = {"camtl_batch_size_sum": 0.0, "camtl_batch_size_count": 0.0}
    for line in metrics_text.splitlines():
        name, _, value = line.partition(" ")
        if name in values:
            values[name] = float(value)
    return values["camtl_batch_size_sum"], values["camtl_batch_size_count"]


def burst(url: str, cache: Path, requests: int, records: int, concurrency: int) -> dict:
    """One warm-up request per task, then ``requests`` requests sent together from
    ``concurrency`` threads: throughput, latencies and how many forward passes they shared."""
    status, text = _http("GET", f"{url}/v1/tasks")
    if status != 200:
        raise SystemExit(f"{url}/v1/tasks: HTTP {status}: {text[:200]}")
    tasks = json.loads(text)["tasks"]
    for body in request_bodies(tasks, cache, len(tasks), 1):  # first passes: CUDA warm-up
        _http("POST", f"{url}/v1/predict", body)
    bodies = request_bodies(tasks, cache, requests, records)
    _, before = _http("GET", f"{url}/metrics")
    go = threading.Event()  # every thread holds its first request until all are queued

    def send(body: dict[str, Any]) -> tuple[int, float]:
        go.wait()
        began = time.perf_counter()
        code, _ = _http("POST", f"{url}/v1/predict", body)
        return code, time.perf_counter() - began

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(send, body) for body in bodies]
        began = time.perf_counter()
        go.set()
        answers = [future.result() for future in futures]
    wall = time.perf_counter() - began
    _, after = _http("GET", f"{url}/metrics")
    latencies = sorted(seconds for _, seconds in answers)
    statuses: dict[str, int] = {}
    for code, _ in answers:
        statuses[str(code)] = statuses.get(str(code), 0) + 1
    ok = statuses.get("200", 0)
    inputs, passes = (a - b for a, b in zip(_batch_counters(after), _batch_counters(before)))
    return {
        "tasks": sorted({b["task"] for b in bodies}),
        "requests": len(bodies),
        "records_per_request": records,
        "concurrency": concurrency,
        "statuses": statuses,
        "wall_s": round(wall, 3),
        "requests_per_s": round(ok / wall, 1),
        "records_per_s": round(ok * records / wall, 1),
        "latency_s": {
            "p50": round(statistics.median(latencies), 4),
            "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 4),
            "max": round(latencies[-1], 4),
        },
        "forward_passes": int(passes),
        "mean_inputs_per_pass": round(inputs / passes, 2) if passes else None,
    }


# ------------------------------------------------------------------------ the summary


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def step_times(run: Path) -> dict[str, Any]:
    """Training seconds per step: over the whole run (evaluation and checkpoints left
    out, the first steps' warm-up in), and between the first and last logged steps."""
    evals = _jsonl(run / "metrics.jsonl")
    logs = _jsonl(run / "train_log.jsonl")
    out: dict[str, Any] = {}
    if evals:
        last = evals[-1]
        out["train_s"] = last["train_s"]
        out["step_s_mean"] = round(last["train_s"] / last["step"], 4)
    if len(logs) >= 2:
        first, last = logs[0], logs[-1]
        steps = last["step"] - first["step"]
        out["step_s_steady"] = round((last["elapsed_s"] - first["elapsed_s"]) / steps, 4)
        out["steady_from_to"] = [first["step"], last["step"]]
    return out


def summary(
    run: Path, device: str, train_wall_s: float, eval_wall_s: float, burst_file: Path
) -> dict[str, Any]:
    import torch

    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    info = report["run_info"]
    evaluation = json.loads((run / "eval_dev.json").read_text(encoding="utf-8"))
    gpu = torch.cuda.get_device_name(0) if device != "cpu" and torch.cuda.is_available() else None
    return {
        "device": device,
        "gpu": gpu,
        "torch": torch.__version__,
        "train": {
            "steps": info["steps_run"],
            "batch_size": info["batch_size"],
            "precision": info["precision"],
            "command_wall_s": round(train_wall_s, 1),
            **step_times(run),
        },
        "evaluate": {
            "split": "dev",
            "device": evaluation["run_info"].get("device"),
            "precision": evaluation["run_info"]["precision"],
            "command_wall_s": round(eval_wall_s, 1),
            "mean_score": evaluation["results"]["aggregate"].get("mean"),
        },
        "serve": json.loads(burst_file.read_text(encoding="utf-8")),
    }


# ------------------------------------------------------------------------ the command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="a small copy of the offline cache, to carry")
    p.add_argument("--cache", type=Path, help="camtl cache (default: $CAMTL_CACHE or ~/.cache)")
    p.add_argument("--config", type=Path, default=Path("configs/demo.yaml"), help="its tasks")
    p.add_argument("--out", type=Path, required=True, help="folder to write (replaced)")
    p = sub.add_parser("unpack", help="a camtl cache from a packed folder")
    p.add_argument("packed", type=Path, help="folder written by pack")
    p.add_argument("--out", type=Path, required=True, help="cache folder to write (replaced)")
    p = sub.add_parser("burst", help="concurrent requests to a running camtl serve")
    p.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    p.add_argument("--cache", type=Path, required=True, help="camtl cache with dev splits")
    p.add_argument("--requests", type=int, default=200, help="requests sent together")
    p.add_argument("--records", type=int, default=8, help="records per request")
    p.add_argument("--concurrency", type=int, default=200, help="client threads")
    p.add_argument("--wait", type=float, default=120, help="seconds to wait for /health")
    p.add_argument("--out", type=Path, required=True, help="JSON to write")
    p = sub.add_parser("summary", help="the check's figures as one JSON")
    p.add_argument("--run", type=Path, required=True, help="the trained run directory")
    p.add_argument("--device", required=True, help="the --device the check used")
    p.add_argument("--train-wall-s", type=float, required=True, help="camtl train, seconds")
    p.add_argument("--eval-wall-s", type=float, required=True, help="camtl evaluate, seconds")
    p.add_argument("--burst", type=Path, required=True, help="JSON written by burst")
    p.add_argument("--out", type=Path, required=True, help="JSON to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "pack":
        from camtl.data.assets import cache_dir

        size = pack(args.cache or cache_dir(), args.out, config_tasks(args.config))
        print(f"packed into {args.out}: {size / 2**20:.1f} MiB")
    elif args.command == "unpack":
        print(f"unpacked into {unpack(args.packed, args.out)}")
    elif args.command == "burst":
        wait_ready(args.url, args.wait)
        result = burst(args.url, args.cache, args.requests, args.records, args.concurrency)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(result))
    else:
        result = summary(args.run, args.device, args.train_wall_s, args.eval_wall_s, args.burst)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
