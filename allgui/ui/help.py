"""Help menu contents: the user guide, the active model's card and the keyboard shortcuts, in a viewer in the app.

The shortcuts are read from the window's own QActions and QShortcuts, so the list cannot drift from the app.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from allgui import DISCLAIMER
from allgui.core.models.summary import summary_rows
from allgui.resources import user_guide_path
from allgui.ui.gallery_view import KEY_HELP, GalleryView

CARD_FILE = "MODEL_CARD.md"


class DocumentViewer(QDialog):
    """A Markdown document in a read-only browser (links to web pages open outside the app)."""

    def __init__(self, title: str, markdown: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(820, 680)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.browser.setMarkdown(markdown)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser, 1)
        layout.addWidget(buttons)


def user_guide_markdown() -> str:
    path = user_guide_path()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:  # a damaged installation: say so rather than show an empty window
        return f"# User guide\n\n**{DISCLAIMER}**\n\nThe user guide could not be read ({path}: {error})."


def manifest_summary(manifest: dict[str, Any]) -> str:
    """The facts every model folder carries in its manifest, as a short Markdown list."""
    return "\n".join(f"- **{label}**: {text}" for label, text in summary_rows(manifest))


def model_card_markdown(loaded: Any) -> str:
    """The active model's MODEL_CARD.md; for a model without one, a plain note and its manifest summary."""
    if loaded is None:
        return f"# Model card\n\n**{DISCLAIMER}**\n\nNo model is loaded yet."
    card = loaded.folder / CARD_FILE
    if card.is_file():
        try:
            return card.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            problem = f"Its model card ({card}) could not be read: {error}."
    else:
        problem = "This model has no model card: only the summary from its manifest is known."
    return (
        f"# Model card: {loaded.title}\n\n**{DISCLAIMER}**\n\n{problem}\n\n"
        f"{manifest_summary(loaded.manifest)}\n\nFolder: `{loaded.folder}`\n"
    )


def _plain(text: str) -> str:
    return text.replace("&", "").replace("…", "")


def shortcut_rows(window: QWidget) -> list[tuple[str, str]]:
    """(keys, what they do) for every QAction and QShortcut of the window that has keys, in creation order."""
    rows: list[tuple[str, str]] = []
    for action in window.findChildren(QAction):
        keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        if keys and action.text():
            rows.append((keys, _plain(action.text())))
    for shortcut in window.findChildren(QShortcut):
        keys = shortcut.key().toString(QKeySequence.SequenceFormat.NativeText)
        if keys and shortcut.whatsThis():  # the review tab describes its own; an undescribed one is internal
            rows.append((keys, shortcut.whatsThis()))
    if window.findChildren(GalleryView):  # its keys are read by the view itself
        rows += KEY_HELP
    return list(dict.fromkeys(rows))  # Return and Enter both confirm: one row each, no repeats


def shortcuts_markdown(rows: list[tuple[str, str]]) -> str:
    table = "\n".join(f"| {keys} | {text} |" for keys, text in rows)
    return f"# Keyboard shortcuts\n\n| keys | what they do |\n|---|---|\n{table}\n"
