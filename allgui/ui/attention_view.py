"""The SE channel-attention view: each SE block's channel excitation for the selected image beside its class average.

Only an SE-CNN has channel attention; for any other model the panel says so plainly instead of showing a substitute.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QStackedWidget, QVBoxLayout, QWidget

from allgui.core.models.base import Attention
from allgui.ui.charts import CLASS_COLORS

NOT_SE_TEXT = (
    "Attention is an SE-CNN view.\n\nThe selected model ({title}) has no squeeze-and-excitation blocks, so there is "
    "no channel attention or heat map to show for it. Choose an SE-CNN model in the toolbar to see where the "
    "network looks."
)


BAND = 1.25  # vertical room per SE block in the single plot (excitations lie in [0, 1])


class AttentionPanel(QWidget):
    """One plot, one horizontal band per SE block (top: first block); channels spread over the band's width.

    A single PlotItem is made once: building one plot per block costs a second or more the first time (pyqtgraph
    builds menus for each), which would freeze the first click.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.stack = QStackedWidget()
        self.plots_widget = pg.GraphicsLayoutWidget()
        self.plot: pg.PlotItem = self.plots_widget.addPlot()
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setMouseEnabled(False, False)
        self.plot.hideAxis("left")
        self.plot.getAxis("bottom").setLabel("channel (spread over each block's width)")
        self.plot.getAxis("bottom").setTicks([[(0, "first"), (1, "last")]])
        self.message = QLabel("Select an image to see the SE-CNN's channel attention.")
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.stack.addWidget(self.plots_widget)
        self.stack.addWidget(self.message)
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addWidget(self.stack, 1)
        self.layout_key: list[tuple[str, int]] = []
        self.bars: list[pg.PlotDataItem] = []
        self.averages: list[pg.PlotDataItem] = []
        self.labels: list[pg.TextItem] = []
        self.shown: list[np.ndarray] = []  # the excitations drawn, per block, as given
        self.shown_averages: list[np.ndarray | None] = []
        self.attention: Attention | None = None
        self.stack.setCurrentWidget(self.message)

    def show_message(self, text: str) -> None:
        self.attention = None
        self.caption.setText("")
        self.message.setText(text)
        self.stack.setCurrentWidget(self.message)

    def show_not_se(self, title: str) -> None:
        self.show_message(NOT_SE_TEXT.format(title=title))

    def _offset(self, block: int) -> float:
        return (len(self.layout_key) - 1 - block) * BAND

    def _ensure_items(self, names: Sequence[str], sizes: Sequence[int]) -> None:
        key = list(zip(names, sizes, strict=True))
        if key == self.layout_key:
            return
        for item in [*self.bars, *self.averages, *self.labels]:
            self.plot.removeItem(item)
        self.bars, self.averages, self.labels = [], [], []
        self.layout_key = key
        for block, (name, size) in enumerate(key):
            offset = self._offset(block)
            # A filled step curve: one path to paint per block, not one rectangle per channel.
            bars = pg.PlotDataItem(
                np.linspace(0, 1, size + 1),
                np.full(size, offset),
                stepMode="center",
                fillLevel=offset,
                brush=QColor("#0072B2"),
                pen=pg.mkPen("#333333", width=0.5),
            )
            average = pg.PlotDataItem([], [], pen=pg.mkPen("#D55E00", width=1.5))
            label = pg.TextItem(f"{name}", anchor=(0, 0), color="k")
            label.setPos(0, offset + BAND - 0.02)
            for item in (bars, average, label):
                self.plot.addItem(item)
            self.bars.append(bars)
            self.averages.append(average)
            self.labels.append(label)
        self.plot.setXRange(0, 1, padding=0.01)
        self.plot.setYRange(0, len(key) * BAND, padding=0.01)

    def set_attention(
        self,
        attention: Attention,
        class_average: Sequence[np.ndarray] | None,
        class_index: int | None,
        average_count: int = 0,
        class_name: str = "",
    ) -> None:
        """Bars: this image's excitation per channel; orange line: the mean over loaded images of its class."""
        self.attention = attention
        sizes = [len(e) for e in attention.excitations]
        self._ensure_items(attention.block_names, sizes)
        color = QColor(CLASS_COLORS[class_index]) if class_index is not None else QColor("#0072B2")
        self.shown, self.shown_averages = [], []
        for block, values in enumerate(attention.excitations):
            values = np.asarray(values, float)
            offset = self._offset(block)
            self.bars[block].setData(np.linspace(0, 1, len(values) + 1), values + offset)
            self.bars[block].setBrush(color)
            self.shown.append(values)
            if class_average is not None and block < len(class_average):
                average = np.asarray(class_average[block], float)
                centres = (np.arange(len(average)) + 0.5) / len(average)
                self.averages[block].setData(centres, average + offset)
                self.shown_averages.append(average)
            else:
                self.averages[block].setData([], [])
                self.shown_averages.append(None)
        if class_average is None:
            note = "class average: computing…" if class_name else ""
        else:
            note = f"orange line: mean excitation of {average_count} loaded image(s) predicted {class_name}"
        self.caption.setText(f"SE channel excitation (0-1) per block; bars: this image. {note}")
        self.stack.setCurrentWidget(self.plots_widget)
