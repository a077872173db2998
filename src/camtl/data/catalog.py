"""`camtl data list`: every registered task with its type, sizes, labels and source, and
the offline encoders."""

from __future__ import annotations

from camtl.data.assets import ENCODERS, default_encoders
from camtl.data.offline import task_meta
from camtl.tasks.registry import get_task, task_names


def _labels(labels: list[str] | None, limit: int = 4) -> str:
    if not labels:
        return "-"
    shown = ", ".join(labels[:limit])
    return f"{len(labels)}: {shown}" + (", ..." if len(labels) > limit else "")


def task_rows() -> list[dict[str, str]]:
    rows = []
    for name in task_names():
        spec = get_task(name)
        source = spec.source
        if source.kind == "offline":
            meta = task_meta(name)
            sizes = (
                "/".join(str(meta["sizes"].get(s, 0)) for s in ("train", "dev", "test"))
                if meta
                else "not fetched"
            )
            origin = f"PyPI {source.package}"
        else:
            sizes = "-"
            origin = f"hub {source.hub_name}" + (
                f"/{source.hub_config}" if source.hub_config else ""
            )
            origin += "".join(f" [{k}={v}]" for k, v in source.filter.items())
        rows.append(
            {
                "task": name,
                "type": spec.type,
                "train/dev/test": sizes,
                "labels": _labels(spec.labels),
                "source": origin,
                "licence": source.license or "-",
            }
        )
    return rows


def encoder_rows() -> list[dict[str, str]]:
    """One row per offline encoder: alias, folder name, what it is, fetched or not."""
    defaults = default_encoders()
    return [
        {
            "encoder": alias,
            "name": encoder.name,
            "fetch": "default" if alias in defaults else "when named",
            "cache": str(encoder.folder()) if encoder.ready() else "not fetched",
            "model": encoder.summary,
            "licence": encoder.license,
        }
        for alias, encoder in ENCODERS.items()
    ]


def _table(rows: list[dict[str, str]], columns: list[str]) -> list[str]:
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = [
        "  ".join(c.ljust(widths[c]) for c in columns),
        "  ".join("-" * widths[c] for c in columns),
    ]
    return lines + ["  ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in rows]


def format_task_list() -> str:
    rows = task_rows()
    lines = _table(rows, ["task", "type", "train/dev/test", "labels", "source"])
    lines.append("")
    lines.append("licence notes:")
    lines += [f"  {r['task']}: {r['licence']}" for r in rows if r["licence"] != "-"]
    lines.append("")
    lines.append(
        "Offline tasks: `camtl data fetch [TASK...]`. Hub tasks need a network, or local "
        "copies of their files (a GLUE folder, or files with the same fields): see "
        "docs/tasks.md."
    )
    encoders = encoder_rows()
    lines.append("")
    lines += _table(encoders, ["encoder", "name", "fetch", "cache", "model"])
    lines.append("")
    lines.append("licence notes:")
    lines += [f"  {r['encoder']}: {r['licence']}" for r in encoders]
    lines.append("")
    lines.append(
        "Offline encoders: `camtl data fetch ENCODER` (`camtl data fetch` alone fetches the "
        "default ones); name one as `model.encoder` in a config."
    )
    return "\n".join(lines)
