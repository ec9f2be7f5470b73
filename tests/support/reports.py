"""Tables the reliability tests print at the end of the pytest run (terminal summary)."""

from __future__ import annotations

REPORTS: list[tuple[str, str]] = []


def add(title: str, text: str) -> None:
    REPORTS.append((title, text))


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, ["-" * w for w in widths], *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)
