"""Tables from OCR boxes for the offline engine: columns from the cells' x-ranges, rows from the lines.

Table columns are the x-ranges that the cells of multi-cell lines cover (vertical gutters separate them);
lines come from :func:`~shared.offline.engine.group_lines`. :mod:`shared.offline.documents` re-exports
these for the provider and reads an invoice's line items with them.
"""

from __future__ import annotations

from typing import Any

from shared.offline.engine import TextBox, group_lines


def union_box(boxes: list[TextBox], separator: str = " ") -> TextBox:
    """One box around several (a cell OCR split in two, an address over several lines)."""
    left, top = min(b.left for b in boxes), min(b.top for b in boxes)
    right, bottom = max(b.right for b in boxes), max(b.bottom for b in boxes)
    return TextBox(separator.join(b.text for b in boxes), min(b.confidence for b in boxes),
                   ((left, top), (right, top), (right, bottom), (left, bottom)))


def column_spans(lines: list[list[TextBox]]) -> list[tuple[float, float]]:
    """X-ranges covered by the cells of multi-cell lines, merged where they overlap: one per column."""
    intervals = sorted((b.left, b.right) for line in lines if len(line) > 1 for b in line)
    spans: list[list[float]] = []
    for left, right in intervals:
        if spans and left < spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], right)
        else:
            spans.append([left, right])
    return [(left, right) for left, right in spans]


def column_of(box: TextBox, spans: list[tuple[float, float]]) -> int:
    overlaps = [min(box.right, r) - max(box.left, left) for left, r in spans]
    best = max(range(len(spans)), key=lambda i: overlaps[i])
    if overlaps[best] > 0:
        return best
    return min(range(len(spans)), key=lambda i: abs(box.center[0] - (spans[i][0] + spans[i][1]) / 2))


def build_table(lines: list[list[TextBox]]) -> tuple[list[str], list[dict[str, TextBox | None]]]:
    """Header names and rows of cell boxes (None for an empty cell) from lines whose first is the header.

    A single-box line that spans several columns (a caption, a note) is not a row.
    """
    spans = column_spans(lines)
    if not spans or not lines:
        return [], []
    grid: list[list[list[TextBox]]] = []
    for line in lines:
        cells: list[list[TextBox]] = [[] for _ in spans]
        for box in line:
            cells[column_of(box, spans)].append(box)
        crossing = sum(1 for left, right in spans if min(line[0].right, right) - max(line[0].left, left) > 0)
        if len(line) == 1 and crossing > 1:
            continue
        grid.append(cells)
    names: list[str] = []
    for i, cell in enumerate(grid[0]):  # names as the extraction layer makes them: "Column 2", "Qty (2)"
        name = base = " ".join(b.text for b in cell).strip(" :") or f"Column {i + 1}"
        n = 1
        while name in names:
            n += 1
            name = f"{base} ({n})"
        names.append(name)
    rows = []
    for cells in grid[1:]:
        rows.append({name: (union_box(cell) if len(cell) > 1 else cell[0]) if cell else None
                     for name, cell in zip(names, cells, strict=True)})
    return names, rows


def _table_lines(lines: list[list[TextBox]]) -> list[list[TextBox]]:
    """Drop the single-box lines (titles) above the first multi-box line, which is the header."""
    first = next((i for i, line in enumerate(lines) if len(line) > 1), 0)
    return lines[first:]


def table_from_boxes(boxes: list[TextBox]) -> dict[str, Any]:
    """``{"columns": [...], "rows": [{column: text or None}]}`` rebuilt from the boxes' geometry."""
    columns, rows = build_table(_table_lines(group_lines(boxes)))
    return {"columns": columns,
            "rows": [{k: v.text if v else None for k, v in row.items()} for row in rows]}


def table_provenance(boxes: list[TextBox]) -> dict[str, Any]:
    """Provenance for :func:`table_from_boxes`: ``rows[i].<column>`` -> the cell's box."""
    _, rows = build_table(_table_lines(group_lines(boxes)))
    return {f"rows[{i}].{k}": v.as_provenance() for i, row in enumerate(rows) for k, v in row.items() if v}
