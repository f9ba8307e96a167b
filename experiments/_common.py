"""Shared plumbing of the experiment scripts: arguments, tables (CSV, Markdown, JSON) and figures.

Every script writes its outputs atomically (:func:`explainfix.fileio.atomic_write`) into
``--out`` (default ``out/experiments/<name>``) and prints its table as Markdown.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

import explainfix
from explainfix.fileio import atomic_write

__all__ = [
    "make_parser",
    "setup",
    "write_table",
    "markdown_table",
    "write_text",
    "save_figure",
    "synthetic_batches",
    "environment",
]


def make_parser(name: str, description: str) -> argparse.ArgumentParser:
    """An ``argparse`` parser with the options every experiment shares.

    Options: ``--out`` (default ``out/experiments/<name>``), ``--seed``, ``--threads`` and
    ``--quick`` (the tiniest setting, for tests and smoke runs).
    """
    parser = argparse.ArgumentParser(
        prog=f"{name}.py", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("out/experiments") / name, help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny models and inputs (seconds; for tests)")
    return parser


def parse_with_quick(parser: argparse.ArgumentParser, argv, quick: Mapping[str, Any]) -> argparse.Namespace:
    """Parse ``argv``; with ``--quick``, options left at their defaults take the ``quick`` values."""
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in quick.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    return args


def setup(args: argparse.Namespace) -> Path:
    """Apply ``--threads``, create ``--out``; returns the output folder."""
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("MPLBACKEND", "Agg")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def environment() -> dict[str, Any]:
    """Versions and machine facts recorded with every result."""
    return {
        "explainfix": explainfix.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 10.0 ** -digits):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 3) -> str:
    """A GitHub Markdown table of ``rows`` (ints with thousands separators, floats rounded)."""
    columns = list(columns or (rows[0].keys() if rows else []))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c), digits) for c in columns) + " |")
    return "\n".join(lines)


def write_text(path: Path, text: str) -> Path:
    """Write a text file atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_table(
    out: Path,
    name: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str,
    notes: str = "",
    columns: Sequence[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    digits: int = 3,
) -> dict[str, Path]:
    """Write ``rows`` as ``<name>.csv``, ``<name>.md`` and ``<name>.json`` in ``out`` and print the table.

    Args:
        out: Output folder (exists).
        name: File stem.
        rows: One dict per row; ``columns`` (default the first row's keys) picks and orders them.
        title: Markdown heading.
        notes: Markdown text written under the table (what the numbers mean, caveats).
        settings: The script's arguments, recorded in the JSON.
        extra: More JSON content (e.g. spectra).
        digits: Digits of floats in the Markdown (CSV and JSON keep full precision).

    Returns:
        ``{"csv": path, "md": path, "json": path}``.
    """
    columns = list(columns or (rows[0].keys() if rows else []))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c) for c in columns})
    table = markdown_table(rows, columns, digits)
    markdown = f"# {title}\n\n{table}\n" + (f"\n{notes.strip()}\n" if notes.strip() else "")
    payload = {
        "title": title,
        "columns": columns,
        "rows": _plain([dict(r) for r in rows]),
        "settings": _plain(dict(settings or {})),
        "environment": environment(),
        **_plain(dict(extra or {})),
    }
    paths = {
        "csv": write_text(out / f"{name}.csv", buffer.getvalue()),
        "md": write_text(out / f"{name}.md", markdown),
        "json": write_text(out / f"{name}.json", json.dumps(payload, indent=2, allow_nan=False) + "\n"),
    }
    print(f"\n{title}\n\n{table}\n")
    return paths


def save_figure(fig, path: Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically (``explainfix.explain.plot.save_figure``)."""
    from explainfix.explain.plot import save_figure as _save

    return _save(fig, Path(path).with_suffix(""), formats=("png",), dpi=dpi)[0]


def synthetic_batches(
    n_batches: int,
    batch_size: int,
    size: int,
    *,
    in_chans: int = 1,
    num_classes: int = 5,
    seed: int = 0,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Synthetic ``(x, y)`` minibatches: Gaussian images and random multi-hot targets.

    ``x`` is ``(batch_size, in_chans, size, size)`` standard normal, ``y`` is
    ``(batch_size, num_classes)`` with independent Bernoulli(1/2) entries - the stand-in for
    CheXpert's five tasks when no data is at hand.
    """
    if min(n_batches, batch_size, size) < 1:
        raise ValueError(f"batches, batch size and image size must be >= 1, got {n_batches}, {batch_size}, {size}")
    gen = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(batch_size, in_chans, size, size, generator=gen),
            torch.randint(0, 2, (batch_size, num_classes), generator=gen).float(),
        )
        for _ in range(n_batches)
    ]

