"""What the review tab's attention panel shows: the selected image's SE attention (computed in the thread pool,
cached per model and row, the rows below and above prefetched) against the averages of the loaded images of its
predicted class."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject

from allgui.core.attention import ClassAverage
from allgui.core.classes import CLASS_NAMES
from allgui.core.models.base import Attention
from allgui.ui.review_tasks import (
    ClassAverages,
    attention_task,
    class_average_task,
    has_attention,
    prefetch_task,
    warm_attention_task,
)

if TYPE_CHECKING:
    from allgui.ui.review_tab import ReviewTab

AVERAGE_SAMPLE = 24  # images per class behind the class-average excitation
PREFETCH_OFFSETS = (1, 2, -1)  # rows whose attention is computed ahead, relative to the selected one


class AttentionController(QObject):
    """Attention for the review tab ``tab``: it reads the tab's session, selection and filtered order, and fills its
    attention and image panels."""

    def __init__(self, tab: ReviewTab) -> None:
        super().__init__(tab)
        self.tab = tab
        self.cache: dict[tuple[str, int], Attention | None] = {}
        self.class_averages: dict[int, ClassAverage] = {}
        self.class_typical: dict[int, list[float]] = {}  # per class and block, the usual distance from the average

    def clear(self) -> None:
        """Forget everything computed: another list or another model."""
        self.cache.clear()
        self.class_averages.clear()
        self.class_typical.clear()

    @property
    def _model_id(self) -> str:
        current = self.tab.models.current
        return current.id if current else ""

    # ---- the plot's items ahead of the first click ---------------------------------------------------------------
    def warm(self) -> None:
        """Build the attention plot for the model's blocks while the window is idle.

        The first display of a model's attention creates a pyqtgraph item per SE block on the GUI thread (150-250 ms);
        done on the first click it froze the window just as a folder's hashing and predictions started.
        """
        classifier = self.tab.models.classifier
        if has_attention(classifier):
            self.tab.runner.start("warm", warm_attention_task, classifier, on_result=self._warmed, background=True)

    def _warmed(self, attention: Attention | None) -> None:
        panel = self.tab.attention_panel
        if attention is None or panel.attention is not None:  # no attention, or a real one is already drawn
            return
        text = panel.message.text()
        panel.set_attention(attention, None, None)
        panel.show_message(text)  # back to what it said: nothing was selected in the meantime

    # ---- the selected image --------------------------------------------------------------------------------------
    def show(self, row: int) -> None:
        tab = self.tab
        classifier = tab.models.classifier
        item = tab.session.items[row]
        if classifier is None:
            tab.attention_panel.show_message("No model is loaded yet.")
            tab.details_shown.emit(row)
            return
        if not has_attention(classifier):
            tab.attention_panel.show_not_se(tab.models.current.title if tab.models.current else "this model")
            tab.image_panel.set_heatmap(None)
            if item.probabilities is not None or item.error:
                tab.details_shown.emit(row)
            return
        if item.error:
            tab.attention_panel.show_message(f"No attention: {item.error}")
            tab.details_shown.emit(row)
            return
        key = (self._model_id, row)
        if key in self.cache:
            self._display(row, self.cache[key])
            self._prefetch(row)
            return
        tab.runner.cancel("prefetch", notify=False)  # the clicked image first
        tab.runner.start(
            "attention",
            attention_task,
            classifier,
            item.path,
            key,
            on_result=self._ready,
            on_error=lambda m: tab.attention_panel.show_message(f"Attention failed: {m}"),
        )

    def _ready(self, result: tuple[Any, Attention | None]) -> None:
        key, attention = result
        self.cache[key] = attention
        if key[1] == self.tab.current_row:
            self._display(key[1], attention)
            self._prefetch(key[1])

    def _prefetch(self, row: int) -> None:
        """Compute attention for the rows shown just below (and above) this one, where a technician goes next."""
        tab = self.tab
        classifier = tab.models.classifier
        model_id = self._model_id
        view_row = tab.proxy.mapFromSource(tab.table_model.index(row, 0)).row()
        wanted = []
        for offset in PREFETCH_OFFSETS:
            index = tab.proxy.index(view_row + offset, 0)
            if view_row >= 0 and index.isValid():
                other = tab.proxy.mapToSource(index).row()
                item = tab.session.items[other]
                if (model_id, other) not in self.cache and item.error is None:
                    wanted.append(((model_id, other), item.path))
        if wanted and classifier is not None:
            tab.runner.start("prefetch", prefetch_task, classifier, wanted, self.cache)

    def _display(self, row: int, attention: Attention | None) -> None:
        tab = self.tab
        item = tab.session.items[row]
        if attention is None:
            tab.attention_panel.show_message("This model gave no attention for the image.")
            tab.image_panel.set_heatmap(None)
        else:
            predicted = item.predicted
            average, count = self.class_averages.get(predicted, (None, 0)) if predicted is not None else (None, 0)
            name = CLASS_NAMES[predicted] if predicted is not None else ""
            typical = self.class_typical.get(predicted) if predicted is not None else None
            tab.attention_panel.set_attention(attention, average, predicted, count, name, typical)
            tab.image_panel.set_heatmap(attention.heatmap)
        if item.probabilities is not None:
            tab.details_shown.emit(row)

    # ---- class averages ------------------------------------------------------------------------------------------
    def start_averages(self) -> None:
        """Average the attention of a sample of each predicted class (after the predictions)."""
        classifier = self.tab.models.classifier
        if not has_attention(classifier):
            return
        by_class: dict[int, list[Path]] = {}
        for item in self.tab.session.items:
            if item.predicted is not None and len(by_class.setdefault(item.predicted, [])) < AVERAGE_SAMPLE:
                by_class[item.predicted].append(item.path)
        self.tab.runner.start("averages", class_average_task, classifier, by_class, on_result=self._averages_ready)

    def _averages_ready(self, result: ClassAverages) -> None:
        self.class_averages, self.class_typical = result
        if self.tab.current_row is not None:
            self.show(self.tab.current_row)
