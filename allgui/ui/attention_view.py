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


class AttentionPanel(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.stack = QStackedWidget()
        self.plots_widget = pg.GraphicsLayoutWidget()
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
        self.plots: list[pg.PlotItem] = []
        self.bars: list[pg.PlotDataItem] = []
        self.averages: list[pg.PlotDataItem] = []
        self.attention: Attention | None = None
        self.stack.setCurrentWidget(self.message)

    def show_message(self, text: str) -> None:
        self.attention = None
        self.caption.setText("")
        self.message.setText(text)
        self.stack.setCurrentWidget(self.message)

    def show_not_se(self, title: str) -> None:
        self.show_message(NOT_SE_TEXT.format(title=title))

    def _ensure_plots(self, names: Sequence[str], sizes: Sequence[int]) -> None:
        current = [(p.titleLabel.text, len(b.yData)) for p, b in zip(self.plots, self.bars, strict=True)]
        if current == [(n, s) for n, s in zip(names, sizes, strict=True)]:
            return
        self.plots_widget.clear()
        self.plots, self.bars, self.averages = [], [], []
        for row, (name, size) in enumerate(zip(names, sizes, strict=True)):
            plot = self.plots_widget.addPlot(row=row, col=0, title=name)
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.setMouseEnabled(False, False)
            plot.setYRange(0, 1.05, padding=0)
            plot.setXRange(-1, size, padding=0)
            plot.getAxis("left").setWidth(28)
            plot.showAxis("bottom", row == len(names) - 1)
            # One filled step curve per block: a single path to paint, not one rectangle per channel.
            bars = pg.PlotDataItem(
                np.arange(size + 1) - 0.5,
                np.zeros(size),
                stepMode="center",
                fillLevel=0,
                brush=QColor("#0072B2"),
                pen=pg.mkPen("#333333", width=0.5),
            )
            average = pg.PlotDataItem([], [], pen=pg.mkPen("#D55E00", width=1.5), stepMode=None)
            plot.addItem(bars)
            plot.addItem(average)
            self.plots.append(plot)
            self.bars.append(bars)
            self.averages.append(average)
        if self.plots:
            self.plots[-1].setLabel("bottom", "channel")

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
        self._ensure_plots(attention.block_names, sizes)
        color = QColor(CLASS_COLORS[class_index]) if class_index is not None else QColor("#0072B2")
        for number, values in enumerate(attention.excitations):
            self.bars[number].setData(np.arange(len(values) + 1) - 0.5, np.asarray(values, float))
            self.bars[number].setBrush(color)
            if class_average is not None and number < len(class_average):
                average = np.asarray(class_average[number], float)
                self.averages[number].setData(np.arange(len(average)), average)
            else:
                self.averages[number].setData([], [])
        if class_average is None:
            note = "class average: computing…" if class_name else ""
        else:
            note = f"orange line: mean excitation of {average_count} loaded image(s) predicted {class_name}"
        self.caption.setText(f"SE channel excitation per block (bars: this image). {note}")
        self.stack.setCurrentWidget(self.plots_widget)
