"""The one export of results: one row per image, as CSV (with the formula guard) or JSON, written atomically, for
``allgui classify``, the Batch and the Review tabs alike (the same bytes for the same rows), and read back by
:func:`parse_rows` and :func:`row_from_cells`."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from allgui import DISCLAIMER
from allgui.core.classes import CLASS_KEYS, CLASS_NAMES
from allgui.core.result import (
    ResultRow,
    ReviewCode,
    ReviewReason,
    reason_from_json,
    reasons_to_json,
)
from allgui.core.statefile import write_text_atomic

# The columns of README's table, in its order, then those added since (never in between: scripts read by position).
COLUMNS: tuple[str, ...] = (
    "path",
    "predicted",
    *(f"p_{key}" for key in CLASS_KEYS),
    "confidence",
    "needs_review",
    "duplicate_group",
    "image_sha256",
    "model_id",
    "error",
    "review_reasons",  # codes (ReviewCode), ";"-separated in CSV; code and text in JSON
    "reviewed_label",
    "reviewed_by",
    "reviewed_at",
)
# The Review tab's export of AllGUI 0.x called the person's label technician_label.
_LABEL_COLUMNS = ("reviewed_label", "technician_label")


def cells(row: ResultRow, for_csv: bool = True) -> dict[str, Any]:
    """The exported columns of ``row``; CSV cells are text ("" for none), JSON keeps values (None for none). A bad
    file has path, error and its review reason filled."""
    blank = "" if for_csv else None
    out: dict[str, Any] = dict.fromkeys(COLUMNS, blank)
    out["path"] = row.path
    out["error"] = row.error or blank
    reasons = row.reasons or ()
    out["review_reasons"] = ";".join(r.code.value for r in reasons) if for_csv else reasons_to_json(reasons)
    if row.probabilities is not None and not row.error:
        out["predicted"] = row.predicted
        for key, value in zip(CLASS_KEYS, row.probabilities, strict=True):
            out[f"p_{key}"] = f"{value:.6f}" if for_csv else value
        out["confidence"] = f"{row.confidence:.6f}" if for_csv else row.confidence
        out["needs_review"] = ("true" if row.needs_review else "false") if for_csv else row.needs_review
        out["image_sha256"] = row.image_sha256
        out["model_id"] = row.model_id
        group = row.duplicate_group
        out["duplicate_group"] = (str(group) if group is not None else "") if for_csv else group
    if row.reviewed_label is not None:
        out["reviewed_label"] = row.reviewed_label
        out["reviewed_by"] = row.reviewed_by or blank
        out["reviewed_at"] = row.reviewed_at or blank
    return out


# A spreadsheet runs a cell that starts with one of these as a formula ("CSV injection"); OWASP's remedy is a "'"
# before it. A run of quotes before one gets one more quote too, so that csv_value gives every text back exactly.
_FORMULA_START = re.compile(r"'*[=+\-@\t\r]")


def csv_cell(value: Any) -> Any:
    """``value`` as a CSV cell that a spreadsheet shows as text, never runs (file names may start with "=")."""
    return "'" + value if isinstance(value, str) and _FORMULA_START.match(value) else value


def csv_value(cell: str) -> str:
    """The text :func:`csv_cell` was given."""
    return cell[1:] if cell.startswith("'") and _FORMULA_START.match(cell, 1) else cell


def needs_quotes(cells: Iterable[Any]) -> bool:
    """Whether a row must be written with every cell quoted: the csv module quotes only the line terminator's
    characters, so a carriage return in a file name would otherwise end the row for most readers."""
    return any(isinstance(cell, str) and "\r" in cell for cell in cells)


def render(rows: Sequence[ResultRow], fmt: str = "csv") -> str:
    """The export text. Both formats carry the disclaimer: CSV as a first '#' line before the header (read it with
    :func:`parse_rows`, or e.g. pandas' ``comment="#"``), JSON as a field beside the rows. CSV text cells go through
    :func:`csv_cell`; JSON keeps every value as it is."""
    if fmt == "json":
        document = {"disclaimer": DISCLAIMER, "rows": [cells(r, for_csv=False) for r in rows]}
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if fmt != "csv":
        raise ValueError("format must be csv or json")
    buffer = io.StringIO()
    buffer.write(f"# {DISCLAIMER}\n")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    quoted = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writeheader()
    for row in rows:
        guarded = {k: csv_cell(v) for k, v in cells(row).items()}
        (quoted if needs_quotes(guarded.values()) else writer).writerow(guarded)
    return buffer.getvalue()


def parse_rows(text: str) -> list[dict[str, Any]]:
    """The rows of an export written by :func:`render`, from either format (CSV values stay strings, with the
    formula guard of :func:`csv_cell` taken off)."""
    if text.lstrip().startswith("{"):
        return list(json.loads(text)["rows"])
    if text.startswith("#"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    return [{k: csv_value(v) if isinstance(v, str) else v for k, v in row.items()} for row in reader]


def write_rows(rows: Sequence[ResultRow], path: Path, fmt: str = "csv") -> None:
    """Write the export atomically (a temporary file with a short name, synced, then renamed over ``path``)."""
    text = render(rows, fmt)
    # A file name that is not valid UTF-8 is written back as its bytes (CSV) or as a JSON \\u escape (JSON).
    write_text_atomic(path, text, errors="surrogateescape" if fmt == "csv" else "backslashreplace")


def fmt_for(path: Path) -> str:
    """The export format a file name asks for: JSON for ``.json``, else CSV."""
    return "json" if Path(path).suffix.lower() == ".json" else "csv"


# ---- reading an export back (a user-handed file: every value is checked) -------------------------------------


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _probability(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0.0 <= number <= 1.0 else None  # also drops NaN


def _class(value: Any) -> str | None:
    return value if isinstance(value, str) and value in CLASS_NAMES else None


def _group(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return int(value) if isinstance(value, str) and value.isdecimal() and len(value) < 10 else None


def _reasons(value: Any) -> tuple[ReviewReason, ...] | None:
    """Reasons as a CSV cell of codes, a JSON list, or None where the file has no such column."""
    if isinstance(value, str):
        codes = [c.strip() for c in value.split(";") if c.strip()]
        return tuple(ReviewReason.of(ReviewCode(c)) for c in codes if c in ReviewCode._value2member_map_)
    if isinstance(value, list):
        found = (reason_from_json(r) for r in value)
        return tuple(r for r in found if r is not None)
    return None


def row_from_cells(row: Mapping[str, Any]) -> ResultRow:
    """A row of an export (CSV strings or JSON values, of this or an earlier AllGUI) as a :class:`ResultRow`;
    values that are not what AllGUI writes are left out (None or "")."""
    error = _text(row.get("error"))
    probabilities = tuple(_probability(row.get(f"p_{key}")) for key in CLASS_KEYS)
    known = all(p is not None and math.isfinite(p) for p in probabilities)
    return ResultRow(
        path=_text(row.get("path")),
        model_id=_text(row.get("model_id")),
        predicted=None if error else _class(row.get("predicted")),
        probabilities=probabilities if known and not error else None,  # type: ignore[arg-type]
        confidence=_probability(row.get("confidence")),
        needs_review=row.get("needs_review") in (True, "true", "True") or bool(error),
        reasons=_reasons(row.get("review_reasons")),
        image_sha256=_text(row.get("image_sha256")),
        duplicate_group=_group(row.get("duplicate_group")),
        error=error,
        reviewed_label=next((c for c in map(_class, (row.get(k) for k in _LABEL_COLUMNS)) if c), None),
        reviewed_by=_text(row.get("reviewed_by")),
        reviewed_at=_text(row.get("reviewed_at")),
    )


def rows_from_cells(rows: Iterable[Any]) -> list[ResultRow]:
    return [row_from_cells(row) for row in rows if isinstance(row, Mapping)]
