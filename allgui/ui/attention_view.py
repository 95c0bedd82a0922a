"""What the network attended to: for the selected image, one bar per SE block saying how far its channel weights are
from the average of its predicted class (with the usual distance as a tick); the channels themselves behind a toggle.

Only an SE-CNN has channel attention; for any other model the panel says so plainly instead of showing a substitute.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QCheckBox, QLabel, QStackedWidget, QVBoxLayout, QWidget

from allgui.core.attention import block_differences
from allgui.core.models.base import Attention
from allgui.ui.charts import CLASS_COLORS

NOT_SE_TEXT = (
    "This view needs an SE-CNN model.\n\nThe selected model ({title}) does not record what it attended to (it has "
    "no squeeze-and-excitation blocks), so there is no attention or heat map to show for it. Choose an SE-CNN model "
    "in the toolbar to see where the network looks."
)
TITLE = "What the network attended to"
TITLE_TIP = (
    "The network looks at the image in stages (blocks). In each stage it weighs its feature channels, stressing some "
    "and damping others. This view compares those weights for the selected image with the average of the loaded "
    "images predicted as the same class.\n\nExperts: each block is a squeeze-and-excitation (SE) block; the weights "
    "are its channel excitations (0-1, one per channel)."
)
SUMMARY_TIP = (
    "Bar: how far this image's weights in that block are from the class average (0 = the same). Tick: how far the "
    "loaded images of that class usually are (their median). A bar well past its tick means the network looked at "
    "this image differently from the rest of its class.\n\nExperts: mean absolute difference between this image's "
    "channel excitation vector and the class-mean vector."
)
CHANNELS_TIP = (
    "Show every block's channel weights for this image (bars) with the class average (orange line).\n\nExperts: the "
    "SE channel excitations, 0-1, one bar per channel, per squeeze-and-excitation block."
)


BAND = 1.25  # vertical room per SE block in the channel plot (excitations lie in [0, 1])
BAR_HEIGHT = 0.6  # of the summary's one-unit row per block


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
        self.summary_bars = pg.BarGraphItem(x0=[], y=[], width=[], height=BAR_HEIGHT, brush=QColor("#0072B2"))
        self.summary_ticks = pg.ScatterPlotItem(symbol="|", size=26, pen=pg.mkPen("k", width=1.5), brush="k")
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)  # "(x0.001)" on the axis would read as noise
        self.plot.addItem(self.summary_bars)
        self.plot.addItem(self.summary_ticks)
        self.message = QLabel("Select an image to see what the network attended to.")
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.stack.addWidget(self.plots_widget)
        self.stack.addWidget(self.message)
        self.title = QLabel(f"<b>{TITLE}</b>")
        self.title.setToolTip(TITLE_TIP)
        self.channels_box = QCheckBox("Show per-block channels")
        self.channels_box.setToolTip(CHANNELS_TIP)
        self.channels_box.toggled.connect(self._show_mode)
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)  # the box on its own line: the panel stays narrow enough at 1280x720
        layout.addWidget(self.channels_box)
        layout.addWidget(self.caption)
        layout.addWidget(self.stack, 1)
        self.layout_key: list[tuple[str, int]] = []
        self.bars: list[pg.PlotDataItem] = []
        self.averages: list[pg.PlotDataItem] = []
        self.labels: list[pg.TextItem] = []
        self.shown: list[np.ndarray] = []  # the excitations drawn, per block, as given
        self.shown_averages: list[np.ndarray | None] = []
        # The summary drawn: per block, this image's distance from its class average and the class's usual one.
        self.summary: list[float] | None = None
        self.summary_typical: list[float] | None = None
        self.attention: Attention | None = None
        self._notes = ("", "")  # the captions of the summary and of the channel view
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

    def set_attention(
        self,
        attention: Attention,
        class_average: Sequence[np.ndarray] | None,
        class_index: int | None,
        average_count: int = 0,
        class_name: str = "",
        typical: Sequence[float] | None = None,
    ) -> None:
        """Summary: per block, this image's distance from the mean of the loaded images of its class (``typical``:
        their usual distance). Channels: its excitation per channel (bars) and that mean (orange line)."""
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
        complete = class_average is not None and len(class_average) == len(attention.excitations)
        self.summary = block_differences(attention.excitations, class_average) if complete else None
        self.summary_typical = list(typical) if complete and typical is not None else None
        rows = self._rows()
        self.summary_bars.setOpts(
            x0=np.zeros(len(rows)), y=rows, width=np.asarray(self.summary or np.zeros(len(rows))), brush=color
        )
        if self.summary_typical is not None:
            self.summary_ticks.setData(np.asarray(self.summary_typical), rows)
        else:
            self.summary_ticks.setData([], [])

        if class_average is None:
            waiting = f"comparing with the loaded images predicted {class_name}…" if class_name else ""
            summary_note = waiting or "No class to compare with yet: the image has no prediction."
            channel_note = f"Class average: {waiting}" if waiting else ""
        else:
            summary_note = (
                f"How far this image's attention is from the {average_count} loaded image(s) predicted "
                f"{class_name} (0 = the same); tick: how far those images usually are. A bar well past its tick: "
                "the network looked at this image differently from the rest of its class."
            )
            channel_note = f"Orange line: average of {average_count} loaded image(s) predicted {class_name}."
        self._notes = (summary_note, f"Channel weights (0-1) per block; bars: this image. {channel_note}")
        self.stack.setCurrentWidget(self.plots_widget)
        self._show_mode()

    def _rows(self) -> np.ndarray:
        """The summary's row per block, first block at the top."""
        return np.arange(len(self.layout_key))[::-1].astype(float)

    @property
    def showing_channels(self) -> bool:
        return self.channels_box.isChecked()

    def _show_mode(self) -> None:
        """Show the summary (the default) or the channels in the one plot; both are kept up to date."""
        channels = self.showing_channels
        for item in [*self.bars, *self.averages, *self.labels]:
            item.setVisible(channels)
        self.summary_bars.setVisible(not channels)
        self.summary_ticks.setVisible(not channels)
        bottom, left = self.plot.getAxis("bottom"), self.plot.getAxis("left")
        if channels:
            self.plot.hideAxis("left")
            bottom.setLabel("channel (spread over each block's width)")
            bottom.setTicks([[(0, "first"), (1, "last")]])
            self.plot.setXRange(0, 1, padding=0.01)
            self.plot.setYRange(0, max(len(self.layout_key), 1) * BAND, padding=0.01)
            self.plot.setToolTip(CHANNELS_TIP)
        else:
            self.plot.showAxis("left")
            rows = self._rows()
            left.setTicks([[(float(row), name) for row, (name, _) in zip(rows, self.layout_key, strict=True)]])
            bottom.setLabel("difference from class average")
            bottom.setTicks(None)
            largest = max([*(self.summary or []), *(self.summary_typical or []), 0.0])
            self.plot.setXRange(0, max(largest * 1.15, 0.05), padding=0)
            self.plot.setYRange(-0.5, len(self.layout_key) - 0.5, padding=0.02)
            self.plot.setToolTip(SUMMARY_TIP)
        if self.attention is not None:
            self.caption.setText(self._notes[1] if channels else self._notes[0])
