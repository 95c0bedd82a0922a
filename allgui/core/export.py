"""The export of a batch classification: one row per image, as CSV (with the formula guard) or JSON, written
atomically, and read back by :func:`parse_rows`."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from allgui import DISCLAIMER
from allgui.core.classes import CLASS_KEYS
from allgui.core.journal import Row
from allgui.core.statefile import write_text_atomic

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
)


def flat_row(row: Row, for_csv: bool = True) -> dict[str, Any]:
    """The exported columns: a bad file has only path and error filled."""
    probabilities = row.get("probabilities")
    out: dict[str, Any] = dict.fromkeys(COLUMNS, "" if for_csv else None)
    out["path"] = row["path"]
    out["error"] = row.get("error") or ("" if for_csv else None)
    if probabilities is not None:
        out["predicted"] = row["predicted"]
        for key, value in zip(CLASS_KEYS, probabilities, strict=True):
            out[f"p_{key}"] = f"{value:.6f}" if for_csv else value
        out["confidence"] = f"{row['confidence']:.6f}" if for_csv else row["confidence"]
        out["needs_review"] = ("true" if row["needs_review"] else "false") if for_csv else row["needs_review"]
        out["image_sha256"] = row["image_sha256"]
        out["model_id"] = row["model_id"]
        group = row.get("duplicate_group", "")
        out["duplicate_group"] = group if for_csv else (group or None)
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


def render(rows: Sequence[Row], fmt: str = "csv") -> str:
    """The export text. Both formats carry the disclaimer: CSV as a first '#' line before the header (read it with
    :func:`parse_rows`, or e.g. pandas' ``comment="#"``), JSON as a field beside the rows. CSV text cells go through
    :func:`csv_cell`; JSON keeps every value as it is."""
    if fmt == "json":
        document = {"disclaimer": DISCLAIMER, "rows": [flat_row(r, for_csv=False) for r in rows]}
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if fmt != "csv":
        raise ValueError("format must be csv or json")
    buffer = io.StringIO()
    buffer.write(f"# {DISCLAIMER}\n")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    quoted = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writeheader()
    for row in rows:
        cells = {k: csv_cell(v) for k, v in flat_row(row).items()}
        (quoted if needs_quotes(cells.values()) else writer).writerow(cells)
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


def write_rows(rows: Sequence[Row], path: Path, fmt: str = "csv") -> None:
    """Write the export atomically (a temporary file with a short name, synced, then renamed over ``path``)."""
    text = render(rows, fmt)
    # A file name that is not valid UTF-8 is written back as its bytes (CSV) or as a JSON \\u escape (JSON).
    write_text_atomic(path, text, errors="surrogateescape" if fmt == "csv" else "backslashreplace")
