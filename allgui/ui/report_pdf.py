"""The case report as PDF: the core's HTML page laid out by QTextDocument on A4 pages of a QPdfWriter.

Needs a QGuiApplication (the offscreen platform will do) and runs in any thread: the thumbnails are handed to the
document as QImage resources (QPixmap belongs to the GUI thread), and the PDF is written to memory, then atomically.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMarginsF, QUrl
from PySide6.QtGui import QFont, QImage, QPageLayout, QPageSize, QPdfWriter, QTextDocument

from allgui import DISCLAIMER, __version__
from allgui.core.models.store import ModelStore
from allgui.core.report import build_html
from allgui.core.result import ResultRow
from allgui.core.statefile import write_bytes_atomic, write_text_atomic
from allgui.ui.workers import Task

REPORT_SUFFIXES = (".pdf", ".html", ".htm")
_DATA_URI = re.compile(r'src="(data:image/png;base64,([A-Za-z0-9+/=]+))"')


def html_to_pdf(page: str, title: str = "AllGUI case report") -> bytes:
    """The page as PDF bytes on A4. QTextDocument.print_ lays out a copy of the document within 2 cm margins of
    the writer's page and numbers the pages, so the writer itself has none."""
    document = QTextDocument()
    font = QFont("DejaVu Sans", 9)
    font.setFeature(QFont.Tag("liga"), 0)  # "fi" as two letters: a search for "file" in the PDF must find it
    document.setDefaultFont(font)
    for uri, payload in set(_DATA_URI.findall(page)):
        image = QImage.fromData(QByteArray(base64.b64decode(payload)), "PNG")
        document.addResource(QTextDocument.ResourceType.ImageResource, QUrl(uri), image)
    document.setHtml(page)
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buffer)
    writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
    writer.setPageMargins(QMarginsF(0, 0, 0, 0), QPageLayout.Unit.Millimeter)
    writer.setTitle(f"{title} — {DISCLAIMER}")
    writer.setCreator(f"AllGUI {__version__}")
    document.print_(writer)
    del writer  # finishes the file
    buffer.close()
    return bytes(buffer.data().data())


def write_report(path: Path, page: str) -> Path:
    """Write the page as HTML or PDF, chosen by the suffix; atomically, so a failure leaves no half file."""
    suffix = path.suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        raise ValueError(f"{path.name}: a report is a .pdf or .html file")
    if suffix == ".pdf":
        write_bytes_atomic(path, html_to_pdf(page))
    else:
        write_text_atomic(path, page, errors="strict")
    return path


def report_task(
    task: Task, rows: Sequence[ResultRow], path: Path, case: str, reviewer: str, store: ModelStore, source: str
) -> Path:
    """For the TaskRunner: build the report (reading thumbnails reports progress and may be cancelled), write it."""
    options = {"case": case, "reviewer": reviewer, "store": store, "source": source}
    page = build_html(rows, progress=task.progress, cancel=task.cancel, **options)
    task.cancel.raise_if_cancelled()
    return write_report(path, page)
