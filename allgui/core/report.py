"""The case report: for the images of one folder (a case, a slide), what the model said and what a person confirmed,
every image that needs review with its thumbnail, duplicate groups, and the model's identity and limits, as one
self-contained HTML page (thumbnails embedded). allgui/ui/report_pdf.py renders the same page to PDF.

The results file is user-handed, so it is read with a size cap, every value is checked before use, and every text
reaches the page HTML-escaped; an image that cannot be read gets a "not available" cell, never a failure.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from allgui import DISCLAIMER, __version__
from allgui.core.classes import CLASS_NAMES
from allgui.core.export import parse_rows, rows_from_cells
from allgui.core.imageio import ImageReadError, read_rgb_and_sha256
from allgui.core.models.store import ModelLoadError, ModelStore
from allgui.core.progress import CancelToken, ProgressCallback, check, no_progress
from allgui.core.result import ResultRow, unlike_training_warning
from allgui.core.statefile import SMALL_FILE_BYTES, StateFileError, read_state_bytes

MAX_RESULTS_BYTES = 64 << 20  # some 200,000 rows; a bigger file is not one AllGUI wrote
THUMBNAIL_PX = 128
THUMBNAIL_SHOWN = 96  # px on the page: 128 px images stay sharp on a high-resolution screen or in print
MAX_ROWS = 500_000  # rows of a few bytes each would otherwise make a small file tens of millions of rows
# Images listed per section (the counts stay exact): a file of a million flagged rows must not mean decoding a
# million images and laying out a PDF of ten thousand pages.
MAX_LISTED = 2000
CARD = "MODEL_CARD.md"
# Control characters and bidirectional overrides: a file name must not break the page or show reversed.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class ReportInputError(ValueError):
    """A results file that cannot be read as AllGUI results; ``str()`` names the file and the reason."""


def read_results(path: str | Path) -> list[ResultRow]:
    """The rows of a CSV or JSON export of ``allgui classify``, the Batch or the Review tab (bounded in size)."""
    try:
        data = read_state_bytes(path, MAX_RESULTS_BYTES)
    except StateFileError as error:
        raise ReportInputError(str(error)) from None
    if data is None:
        raise ReportInputError(f"{path}: no such file")
    # At most one row per line (CSV) or per object (JSON): an upper bound on the rows, checked before parsing.
    if data.count(b"{" if data.lstrip().startswith(b"{") else b"\n") > MAX_ROWS + 1:
        raise ReportInputError(f"{path}: more than {MAX_ROWS:,} rows; refused")
    try:
        # surrogateescape: a file name that is not UTF-8 (written back as its bytes) still names its file.
        rows = parse_rows(data.decode("utf-8", errors="surrogateescape").lstrip("\ufeff"))
    except RecursionError:
        raise ReportInputError(f"{path}: nested too deeply to be an AllGUI results file") from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # csv.Error is an Exception, below
        raise ReportInputError(f"{path}: not an AllGUI results file ({type(error).__name__}: {error})") from None
    except Exception as error:  # noqa: BLE001 - csv.Error (a field over the csv module's limit, a NUL byte)
        raise ReportInputError(f"{path}: not a readable CSV file ({error})") from None
    if not isinstance(rows, list):
        raise ReportInputError(f"{path}: its rows are not a list")
    return rows_from_cells(rows)


# ---- the model ---------------------------------------------------------------------------------------------------
@dataclass
class ModelFacts:
    id: str
    known: bool = False
    title: str = ""
    created: str = ""
    allgui_version: str = ""
    files: dict[str, str] | None = None
    limits: str | None = None
    note: str = ""  # what could not be shown, and why


def _plain(markdown: str) -> str:
    text = " ".join(line.strip().removeprefix("- ") for line in markdown.splitlines())
    return re.sub(r"\*\*|__|`", "", text).strip()


def limits_paragraph(card: str) -> str | None:
    """The card's first paragraph under a heading that names limits, else its opening paragraph (the template's
    "what it is for, what it never replaces"), as plain text."""
    sections: list[tuple[str, str]] = []
    for part in re.split(r"^(#{1,6} .*)$", card, flags=re.MULTILINE):
        if part.startswith("#"):
            sections.append((part, ""))
        elif sections:
            sections[-1] = (sections[-1][0], part)
    chosen = next((body for head, body in sections if re.search(r"limit", head, re.IGNORECASE)), None)
    if chosen is None and sections:
        chosen = sections[0][1]
    paragraphs = [p for p in re.split(r"\n\s*\n", chosen or "") if p.strip()]
    return _plain(paragraphs[0]) if paragraphs else None


def model_facts(model_id: str, store: ModelStore) -> ModelFacts:
    """What the store knows of ``model_id``: version, files' SHA-256 and the card's limits; a note when unknown."""
    try:
        info = store.find(model_id)
    except ModelLoadError as error:
        reason = "it is not in this computer's model store" if isinstance(error, KeyError) else str(error)
        return ModelFacts(model_id, note=f"Model {model_id}: {reason}; its version, files and limits are not shown.")
    manifest = info.manifest
    versions = manifest.get("library_versions")
    files = {str(k): str(v) for k, v in manifest["files"].items()}
    facts = ModelFacts(
        model_id,
        known=True,
        title=info.title,
        created=info.created,
        allgui_version=str(versions.get("allgui", "")) if isinstance(versions, dict) else "",
        files=files,
    )
    if CARD not in files:
        facts.note = "This model has no model card."
        return facts
    try:
        data = read_state_bytes(info.folder / CARD, SMALL_FILE_BYTES)
    except StateFileError as error:
        data, facts.note = None, f"The model card cannot be read ({error.reason})."
    if data is not None and hashlib.sha256(data).hexdigest() != files[CARD]:
        facts.note = "The model card was changed since the model was saved (SHA-256 differs); its limits are not shown."
    elif data is not None:
        facts.limits = limits_paragraph(data.decode("utf-8", errors="replace"))
    return facts


# ---- thumbnails --------------------------------------------------------------------------------------------------
def locate_image(path_text: str, images_root: Path | None) -> Path:
    """Where the image of a row is here: its own path, or under ``images_root`` (a results file from another
    computer) the longest tail of its path that exists there, never a place outside the root."""
    if images_root is None:
        return Path(path_text)
    parts = [p for p in re.split(r"[\\/]+", path_text) if p and p not in (".", "..") and not p.endswith(":")]
    root = images_root.resolve()
    for start in range(len(parts)):
        candidate = images_root.joinpath(*parts[start:])
        if os.path.lexists(candidate) and candidate.resolve().is_relative_to(root):
            return candidate
    return images_root.joinpath(*parts[-1:])


def thumbnail(path: Path, sha256: str = "") -> tuple[str | None, str]:
    """A PNG data URI of the image at most :data:`THUMBNAIL_PX` on a side, and a note (why there is none, or that
    the file is not the one classified)."""
    try:
        image, digest = read_rgb_and_sha256(path, draft=(THUMBNAIL_PX, THUMBNAIL_PX))
    except ImageReadError as error:
        return None, f"not available: {error.reason}"
    except ValueError:  # a NUL byte in the name: no file can have it
        return None, "not available: no file can have this name"
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    note = "this file differs from the one classified (SHA-256)" if sha256 and digest != sha256 else ""
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), note


# ---- the page ----------------------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    """Text for the page: escaped, undecodable bytes and control or bidi characters shown as U+FFFD."""
    text = str(value).encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    return html.escape(_UNSAFE.sub("\ufffd", text), quote=True)


def _table(header: Sequence[str] | None, rows: Iterable[Sequence[str]], widths: Sequence[int] = ()) -> str:
    """A table of already-escaped cells (``header`` is escaped here; ``widths`` in percent of the page)."""
    size = ' width="100%"' if widths else ""
    shares = [f' width="{w}%"' for w in widths] + [""] * len(header or ())
    head = "".join(f"<th{share}>{_e(h)}</th>" for h, share in zip(header or (), shares, strict=False))
    head = f"<thead><tr>{head}</tr></thead>" if header else ""  # Qt repeats a thead on every page
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table border="1" cellspacing="0" cellpadding="4"{size}>{head}{body}</table>'


def _pairs(pairs: Iterable[tuple[str, str]]) -> str:
    """A two-column table of names (escaped here) and values (already escaped)."""
    return _table(None, ([f"<b>{_e(k)}</b>", v] for k, v in pairs))


def default_case_name(rows: Sequence[ResultRow], fallback: str = "") -> str:
    """The name of the folder holding every image (class sub-folders included), else ``fallback``."""
    try:
        folder = os.path.commonpath([os.path.dirname(r.path) for r in rows if r.path])
    except ValueError:  # none, or absolute and relative paths mixed
        return fallback
    return os.path.basename(folder.rstrip("\\/")) or fallback


def _unlisted(count: int) -> str:
    return f"<p><i>The first {MAX_LISTED:,} of {count:,} are listed.</i></p>" if count > MAX_LISTED else ""


def _reason(row: ResultRow) -> str:
    return "; ".join(reason.text for reason in row.reasons or ()) or "needs review"


def _model_section(rows: Sequence[ResultRow], store: ModelStore) -> str:
    ids = Counter(r.model_id for r in rows if r.model_id)
    if not ids:
        return "<p>The results file names no model.</p>"
    parts = [] if len(ids) == 1 else [f'<p class="warning">These results come from {len(ids)} models.</p>']
    for model_id in ids:
        facts = model_facts(model_id, store)
        cells = [("Model id", _e(model_id))]
        if facts.known:
            cells += [("Title", _e(facts.title)), ("Created", _e(facts.created))]
            cells += [("Saved with AllGUI", _e(facts.allgui_version or "not recorded"))]
        parts.append(_pairs(cells))
        if facts.files:
            files = ((_e(name), f'<span class="mono">{_e(sha)}</span>') for name, sha in sorted(facts.files.items()))
            parts.append("<p>Model files:</p>" + _table(["file", "SHA-256"], files, (30, 70)))
        if facts.limits:
            parts.append(f"<p><b>Limits (from the model card):</b> {_e(facts.limits)}</p>")
        if facts.note:
            parts.append(f"<p><i>{_e(facts.note)}</i></p>")
    return "".join(parts)


def _counts_section(rows: Sequence[ResultRow]) -> str:
    predicted = Counter(r.predicted for r in rows if r.predicted)
    confirmed = Counter(r.reviewed_label for r in rows if r.reviewed_label)
    any_confirmed = bool(confirmed)
    lines = [[_e(name), str(predicted[name]), str(confirmed[name]) if any_confirmed else "—"] for name in CLASS_NAMES]
    table = _table(["class", "predicted", "confirmed by a person"], lines)
    note = "" if any_confirmed else "<p>No image has a label confirmed by a person in these results.</p>"
    return table + note


def _disagreements(rows: Sequence[ResultRow]) -> str:
    checked = [r for r in rows if r.reviewed_label and r.predicted]
    differ = [r for r in checked if r.reviewed_label != r.predicted]
    if not checked:
        return "<p>None to show: no image has both a predicted and a confirmed class.</p>"
    if not differ:
        return f"<p>None: the person confirmed the model's class for all {len(checked)} labelled images.</p>"
    lines = ([_e(r.name), _e(r.predicted), _e(r.reviewed_label), _e(r.reviewed_by or "—")] for r in differ[:MAX_LISTED])
    table = _table(["image", "AI", "person", "reviewed by"], lines)
    return f"<p>{len(differ)} of {len(checked)} labelled images.</p>{table}{_unlisted(len(differ))}"


def _review_section(
    rows: Sequence[ResultRow], images_root: Path | None, progress: ProgressCallback, cancel: CancelToken | None
) -> str:
    flagged = [r for r in rows if r.predicted and r.needs_review]
    if not flagged:
        return "<p>No image needs review.</p>"
    lines = []
    listed = flagged[:MAX_LISTED]
    for number, row in enumerate(listed):
        check(cancel)
        progress(number, len(listed), f"report: thumbnail {number + 1} of {len(listed)}")
        uri, note = thumbnail(locate_image(row.path, images_root), row.image_sha256)
        picture = f'<img class="thumb" src="{uri}" width="{THUMBNAIL_SHOWN}" alt="">' if uri else ""
        picture += f'<br><span class="small">{_e(note)}</span>' if note else ""
        shown = list(zip(CLASS_NAMES, row.probabilities, strict=True)) if row.probabilities else []
        chances = "<br>".join(_e(f"{n} {p:.3f}").replace(" ", "&nbsp;") for n, p in shown) or "not recorded"
        confidence = f"<br>confidence {row.confidence:.3f}" if row.confidence is not None else ""
        name = f'<b>{_e(row.name)}</b><br><span class="small">{_e(row.path)}</span>'
        predicted = _e(row.predicted).replace(" ", "&nbsp;")  # "Early Pre-B" on one line
        lines.append([picture, name, f"<b>{predicted}</b>{confidence}", chances, _e(_reason(row))])
    progress(len(listed), len(listed), "report: thumbnails done")
    unknown = all(r.reasons is None for r in flagged)
    note = "<p>The results file does not record why each image was flagged.</p>" if unknown else ""
    header = ["thumbnail", "image", "class", "probabilities", "reason"]
    return note + _table(header, lines, (15, 25, 16, 22, 22)) + _unlisted(len(flagged))


def _duplicates_section(rows: Sequence[ResultRow]) -> str:
    groups: dict[int, list[str]] = {}
    for row in rows:
        if row.duplicate_group is not None:
            groups.setdefault(row.duplicate_group, []).append(row.name)
    if not groups:
        return "<p>No duplicate or near-duplicate images.</p>"
    order = sorted(groups)[:MAX_LISTED]
    table = _table(["group", "images"], ([str(g), ", ".join(map(_e, groups[g][:MAX_LISTED]))] for g in order))
    return table + _unlisted(len(groups))


def _drift_warning(rows: Sequence[ResultRow]) -> str:
    """The batch's unlike-training warning when the file records the reasons; a note when it does not."""
    classified = [r for r in rows if r.predicted]
    if classified and all(r.reasons is None for r in classified):
        return (
            "<p><i>The results file does not record review reasons, so whether these images are unlike the "
            "model's training images is not shown.</i></p>"
        )
    warning = unlike_training_warning(classified)
    return f'<p class="warning">Warning: {_e(warning)}</p>' if warning else ""


STYLE = """
body { font-family: 'DejaVu Sans', Arial, sans-serif; font-size: 10pt; }
h1 { font-size: 17pt; margin-bottom: 2px; } h2 { font-size: 12.5pt; margin-top: 16px; margin-bottom: 4px; }
table { border-collapse: collapse; margin-bottom: 6px; }
th { background-color: #eeeeee; text-align: left; }
td, th { border: 1px solid #999999; padding: 4px; vertical-align: top; font-size: 9pt; }
.disclaimer { color: #7a4b00; background-color: #fff4d6; font-weight: bold; padding: 4px; }
.warning { color: #a00000; font-weight: bold; }
.small { font-size: 7.5pt; color: #444444; } .mono { font-family: 'DejaVu Sans Mono', monospace; font-size: 7.5pt; }
"""


def build_html(
    rows: Sequence[ResultRow],
    *,
    case: str,
    reviewer: str = "",
    store: ModelStore | None = None,
    images_root: Path | None = None,
    source: str = "",
    created: datetime | None = None,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> str:
    """The report as one HTML page; every text in it is escaped, every image embedded."""
    store = store or ModelStore()
    created = created or datetime.now().astimezone()
    errors = [r for r in rows if r.error]
    classified = [r for r in rows if r.predicted]
    flagged = sum(r.needs_review for r in classified)
    pending = len(rows) - len(errors) - len(classified)
    summary = f"{len(rows)} rows: {len(classified)} classified ({flagged} need review), {len(errors)} unreadable"
    summary += f", {pending} without a class" if pending else ""
    facts = [
        ("Case", _e(case or "not named")),
        ("Date", _e(f"{created:%Y-%m-%d %H:%M} {created.tzname() or ''}".strip())),
        ("Reviewer", _e(reviewer.strip() or "not set")),
        ("Results", _e(source or "—")),
        ("Images", _e(summary) if rows else "<b>No images: the results hold no rows.</b>"),
        ("Report made by", _e(f"AllGUI {__version__}")),
    ]
    disclaimer = f'<p class="disclaimer">{_e(DISCLAIMER)}</p>'
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Case report: {_e(case)}</title>',
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Case report: {_e(case or 'not named')}</h1>",
        disclaimer,
        _pairs(facts),
        "<h2>Model</h2>",
        _model_section(rows, store),
    ]
    if rows:
        parts += [_drift_warning(rows), "<h2>Images per class</h2>", _counts_section(rows)]
        parts += ["<h2>AI and person disagree</h2>", _disagreements(rows)]
        parts += [f"<h2>Images that need review ({flagged})</h2>"]
        parts += [_review_section(rows, images_root, progress, cancel)]
        if errors:
            lines = ([_e(r.name), _e(r.error)] for r in errors[:MAX_LISTED])
            parts += [f"<h2>Unreadable images ({len(errors)})</h2>", _table(["image", "reason"], lines)]
            parts += [_unlisted(len(errors))]
        parts += ["<h2>Duplicate groups</h2>", _duplicates_section(rows)]
    signer = _e(reviewer.strip()) if reviewer.strip() else "_" * 30
    parts += [
        "<h2>Signature</h2>",
        f"<p>Reviewed by: {signer}</p><p>Signature: {'_' * 40}&nbsp;&nbsp;&nbsp;Date: {'_' * 16}</p>",
        disclaimer,
        "</body></html>",
    ]
    return "\n".join(parts)
