"""Compact, model-friendly text for query results: a header line, pipe-separated rows, ISO times, and an explicit
note whenever rows or characters were cut."""
from __future__ import annotations

import math
from datetime import date, datetime, time
from decimal import Decimal

MAX_CELL_CHARS = 2000
MORE_HINT = "use WHERE/LIMIT or aggregate"


def fmt(value, max_cell: int = MAX_CELL_CHARS) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        if value.second == 0 and value.microsecond == 0:
            return value.strftime("%Y-%m-%d %H:%M")
        return value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}" if abs(value) < 1e15 else repr(value)
    if isinstance(value, Decimal):
        # Trailing zeros carry no information (PostgreSQL's round() returns numeric(…, 3)): 66.500 -> 66.5.
        return format(value.normalize(), "f")
    text = str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "\\n")
    if len(text) > max_cell:
        text = text[:max_cell] + f"…[+{len(text) - max_cell} chars]"
    return text


def table_text(columns: list[str], rows: list[tuple], more: int = 0, more_capped: bool = False,
               max_chars: int = 8000, hint: str = MORE_HINT, max_cell: int = MAX_CELL_CHARS) -> str:
    """Header + rows; never longer than max_chars; says how many rows were not shown."""
    lines = ["|".join(columns)]
    size = len(lines[0])
    shown = 0
    for row in rows:
        line = "|".join(fmt(v, max_cell) for v in row)
        if size + len(line) + 1 > max_chars - 120:
            break
        lines.append(line)
        size += len(line) + 1
        shown += 1
    not_shown = (len(rows) - shown) + more
    if not rows:
        lines.append("(no rows)")
    elif not_shown:
        count = f"{not_shown}+" if more_capped else str(not_shown)
        why = "" if shown == len(rows) else " (output size limit)"
        lines.append(f"... {count} more rows not shown{why} ({hint})")
    else:
        lines.append(f"({shown} row{'s' if shown != 1 else ''})")
    return "\n".join(lines)
