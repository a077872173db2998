"""The transfer table from experiments/transfer.sh's runs: dev score of the held-out task per
fraction of its training data, CA-MTL (add-task, and add-task --joint where it was run) vs
the bare encoder fine-tuned.

    python experiments/transfer_table.py runs/transfer --out experiments/results/transfer.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def score(run: Path, split: str = "report") -> dict | None:
    path = run / f"{split}.json"
    if not path.is_file():
        return None
    tasks = json.loads(path.read_text(encoding="utf-8"))["results"]["tasks"]
    (entry,) = tasks.values()
    return {"metric": entry["primary_metric"], "score": entry["scores"][entry["primary_metric"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    for camtl in sorted(args.root.glob("camtl_*"), key=lambda p: float(p.name.split("_")[1])):
        fraction = camtl.name.split("_", 1)[1]
        info = json.loads((camtl / "transfer.json").read_text(encoding="utf-8"))
        bare, joint = args.root / f"bare_{fraction}", args.root / f"joint_{fraction}"
        rows.append(
            {
                "fraction": float(fraction),
                "train_examples": info["train_examples"],
                "steps": info["steps"],
                "init": info["init"],
                "camtl_dev": score(camtl),
                "bare_dev": score(bare),
                "joint_dev": score(joint),  # add-task --joint, where it was run
                "camtl_test": score(camtl, "report_test"),
                "bare_test": score(bare, "report_test"),
                "joint_test": score(joint, "report_test"),
                "camtl_wall_s": info["wall_time_s"],
            }
        )
    joint_cols = any(r["joint_dev"] for r in rows)

    def cell(x: dict | None) -> str:
        return "-" if x is None else f"{x['score']:.2f}"

    extra = ["--joint dev", "--joint test"] if joint_cols else []
    header = [
        "data",
        "examples",
        "steps",
        "CA-MTL (add-task, init) dev",
        "bare MiniLM dev",
        "CA-MTL test",
        "bare test",
        *extra,
    ]
    print("| " + " | ".join(header) + " |\n|" + "---:|" * len(header))
    for r in rows:
        cells = [
            f"{100 * r['fraction']:g}%",
            str(r["train_examples"]),
            str(r["steps"]),
            f"{cell(r['camtl_dev'])} ({r['init']})",
            cell(r["bare_dev"]),
            cell(r["camtl_test"]),
            cell(r["bare_test"]),
        ]
        if joint_cols:
            cells += [cell(r["joint_dev"]), cell(r["joint_test"])]
        print("| " + " | ".join(cells) + " |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
