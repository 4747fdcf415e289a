"""Plain-text rendering shared by the CLI and the jobs' reports (imported by both, importing neither)."""

from __future__ import annotations


def format_table(header: list[str], rows: list[list[object]] | list[tuple[object, ...]]) -> str:
    """Rows as an aligned text table under `header`, nulls as NULL (as the Trino CLI shows them)."""
    cells = [[str(h) for h in header]] + [["NULL" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
