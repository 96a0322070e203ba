"""The offline engine's plain-text answers: the image report and tables as Markdown.

Pure formatting of what :mod:`shared.offline.engine` measured and read, kept apart from the
provider so it is tested on dicts and strings alone. Nothing here is inferred.
"""

from __future__ import annotations

from typing import Any

REPORT_MAX_LINES = 40


def report(facts: dict[str, Any], lines: list[str], *, size: tuple[int, int] | None = None,
           source_format: str | None = None, exif_removed: bool = False) -> str:
    """The plain-text report: what Pillow measured and what OCR read, nothing inferred.

    ``size`` and ``source_format`` describe the uploaded original; the colours come from the image
    the engine received. A prepared image has had its EXIF removed on purpose (GPS, serial numbers),
    which ``exif_removed`` says instead of a misleading "none".
    """
    width, height = size or (facts["width"], facts["height"])
    kind = f" {source_format}" if source_format else ""
    colours = ", ".join(f"{c['name']} {c['hex']} ({round(c['share'] * 100)}%)" for c in facts["dominant_colours"])
    exif = ", ".join(f"{k} {v}" for k, v in facts["exif"].items()) or (
        "removed when the image was prepared" if exif_removed else "none")
    head = (f"Local analysis (no language model): {width}x{height} {facts['orientation']}{kind} image; "
            f"dominant colours: {colours or 'unknown'}; EXIF: {exif}; ")
    if not lines:
        return head + "no text found."
    shown = lines[:REPORT_MAX_LINES]
    more = f"\n... ({len(lines) - len(shown)} more lines)" if len(lines) > len(shown) else ""
    return head + f"text found ({len(lines)} lines):\n" + "\n".join(shown) + more


def markdown_table(table: dict[str, Any]) -> str:
    """A ``{"columns", "rows"}`` table as Markdown; empty cells stay empty; "" when there are no columns."""
    columns = table.get("columns") or []
    if not columns:
        return ""

    def cell(value: Any) -> str:
        return "" if value is None else str(value).replace("|", "\\|")

    out = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in table.get("rows") or []]
    return "\n".join(out)
