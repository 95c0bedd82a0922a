"""Small pyqtgraph charts shared by the tabs: class bars, grouped bars, confusion matrices, training curves."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QColor, QResizeEvent, QShowEvent
from PySide6.QtWidgets import QGridLayout, QSizePolicy, QWidget

from allgui.core.classes import CLASS_NAMES

pg.setConfigOptions(antialias=True, background="w", foreground="k", imageAxisOrder="row-major")

# One colour per class, the same in every chart (colour-blind-safe Okabe-Ito picks).
CLASS_COLORS = ("#009E73", "#E69F00", "#56B4E9", "#CC79A7")
SERIES_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#999999")


def _class_axis(plot: pg.PlotItem, labels: Sequence[str]) -> None:
    plot.getAxis("bottom").setTicks([list(enumerate(labels))])


class ClassBarChart(pg.PlotWidget):
    """One bar per class: probabilities of one image, or counts per class."""

    def __init__(self, title: str = "", y_label: str = "", fixed_unit_range: bool = True, parent=None) -> None:
        super().__init__(parent=parent)
        self.fixed_unit_range = fixed_unit_range
        item = self.getPlotItem()
        item.setTitle(title)
        item.setLabel("left", y_label)
        item.setMenuEnabled(False)
        item.hideButtons()
        self.setMouseEnabled(False, False)
        _class_axis(item, CLASS_NAMES)
        self.values = np.zeros(len(CLASS_NAMES))
        self.bars = pg.BarGraphItem(
            x=np.arange(len(CLASS_NAMES)), height=self.values, width=0.7, brushes=[QColor(c) for c in CLASS_COLORS]
        )
        self.addItem(self.bars)
        self.labels = [pg.TextItem("", anchor=(0.5, 1.0), color="k") for _ in CLASS_NAMES]
        for label in self.labels:
            self.addItem(label)
        self.setXRange(-0.6, len(CLASS_NAMES) - 0.4, padding=0)
        self.set_values(None)

    def set_values(self, values: Sequence[float] | None, fmt: str = "{:.2f}") -> None:
        self.values = np.zeros(len(CLASS_NAMES)) if values is None else np.asarray(values, dtype=float)
        self.bars.setOpts(height=self.values)
        top = 1.0 if self.fixed_unit_range else max(1.0, float(self.values.max(initial=0)) * 1.15)
        self.setYRange(0, top * 1.15, padding=0)  # room for the value labels
        for index, label in enumerate(self.labels):
            label.setText("" if values is None else fmt.format(self.values[index]))
            label.setPos(index, self.values[index] + top * 0.01)


class GroupedBarChart(pg.GraphicsLayoutWidget):
    """Bars for several series (e.g. accuracy and macro F1) over categories (e.g. experiments).

    The legend has a column of its own beside the plot: inside the plot it covered the tallest bars.
    """

    def __init__(self, title: str = "", parent=None) -> None:
        super().__init__(parent=parent)
        self.title = self.addLabel(title, row=0, col=0, colspan=2, size="11pt")
        self.plot = self.addPlot(row=1, col=0)
        self.legend = pg.LegendItem()
        self.legend.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)  # its entries, at the top
        self.addItem(self.legend, row=1, col=1)
        self.ci.layout.setAlignment(self.legend, Qt.AlignmentFlag.AlignTop)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setMouseEnabled(False, False)
        self.items: list[pg.BarGraphItem] = []

    def set_title(self, text: str) -> None:
        self.title.setText(text)

    def set_data(self, categories: Sequence[str], series: dict[str, Sequence[float]]) -> None:
        for item in self.items:
            self.plot.removeItem(item)
        self.items.clear()
        self.legend.clear()
        count = max(1, len(series))
        width = 0.8 / count
        for number, (name, values) in enumerate(series.items()):
            x = np.arange(len(categories)) - 0.4 + width * (number + 0.5)
            item = pg.BarGraphItem(
                x=x,
                height=np.asarray(values, float),
                width=width * 0.95,
                brush=QColor(SERIES_COLORS[number % len(SERIES_COLORS)]),
                name=name,
            )
            self.plot.addItem(item)
            self.legend.addItem(item, name)
            self.items.append(item)
        _class_axis(self.plot, list(categories))
        self.plot.setYRange(0, 1.05, padding=0)
        self.plot.setXRange(-0.6, max(0, len(categories) - 1) + 0.6, padding=0)


class ConfusionMatrixView(pg.PlotWidget):
    """A confusion matrix as a heat map (rows: true class, columns: predicted) with the counts written in."""

    def __init__(self, title: str = "", parent=None) -> None:
        super().__init__(parent=parent)
        item = self.getPlotItem()
        item.setTitle(title)
        item.setMenuEnabled(False)
        item.hideButtons()
        item.invertY(True)
        item.setLabel("left", "true")
        item.setLabel("bottom", "predicted")
        self.setMouseEnabled(False, False)
        item.setAspectLocked(True)  # square cells: the whole matrix shows at any size of the view
        self.setMinimumSize(MatrixGrid.MIN_SIDE, MatrixGrid.MIN_SIDE)
        self.image = pg.ImageItem()
        self.image.setColorMap(pg.colormap.get("CET-L12"))
        self.addItem(self.image)
        short = [
            name.replace("Early Pre-B", "Early").replace("Pre-B", "Pre").replace("Pro-B", "Pro") for name in CLASS_NAMES
        ]
        ticks = [[(i + 0.5, name) for i, name in enumerate(short)]]
        item.getAxis("bottom").setTicks(ticks)
        item.getAxis("left").setTicks(ticks)
        self.texts: list[pg.TextItem] = []
        self.matrix = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), dtype=int)

    def set_matrix(self, matrix: Sequence[Sequence[int]]) -> None:
        self.matrix = np.asarray(matrix, dtype=int)
        rows = self.matrix.sum(axis=1, keepdims=True)
        share = np.divide(self.matrix, rows, out=np.zeros(self.matrix.shape), where=rows > 0)
        self.image.setImage(share, levels=(0, 1))
        for text in self.texts:
            self.removeItem(text)
        self.texts = []
        for (row, col), value in np.ndenumerate(self.matrix):
            text = pg.TextItem(str(value), anchor=(0.5, 0.5), color="w" if share[row, col] > 0.5 else "k")
            text.setPos(col + 0.5, row + 0.5)
            self.addItem(text)
            self.texts.append(text)
        self.setRange(xRange=(0, self.matrix.shape[1]), yRange=(0, self.matrix.shape[0]), padding=0.02)


class MatrixGrid(QWidget):
    """Confusion matrices in as many columns as makes each one largest while all of them fit the visible area.

    Below ``MIN_SIDE`` pixels a side the matrices stop shrinking and the surrounding scroll area scrolls instead.
    """

    MIN_SIDE = 150

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(4, 4, 4, 4)
        self.views: list[ConfusionMatrixView] = []
        self.columns = 0
        self._watched: QWidget | None = None

    def set_views(self, views: Sequence[ConfusionMatrixView]) -> None:
        for view in self.views:
            self.grid.removeWidget(view)
            view.deleteLater()
        self.views = list(views)
        self.columns = 0
        self._arrange()

    @staticmethod
    def columns_for(count: int, width: float, height: float) -> int:
        """The column count that gives ``count`` square cells the largest side in ``width`` x ``height``."""
        best, best_side = 1, -1.0
        for columns in range(1, max(1, count) + 1):
            side = min(width / columns, height / math.ceil(count / columns))
            if side > best_side + 1e-9:
                best, best_side = columns, side
        return best

    def _visible_size(self) -> tuple[int, int]:
        # Inside a scroll area the parent is its viewport: the area the matrices should fit.
        area = self.parentWidget() if self.parentWidget() is not None else self
        return area.width(), area.height()

    def _arrange(self) -> None:
        if not self.views:
            self.setMinimumSize(0, 0)
            return
        columns = self.columns_for(len(self.views), *self._visible_size())
        if columns == self.columns:
            return
        self.columns = columns
        for view in self.views:
            self.grid.removeWidget(view)
        for number, view in enumerate(self.views):
            self.grid.addWidget(view, number // columns, number % columns)
        rows = math.ceil(len(self.views) / columns)
        margins = 8 + 6 * max(columns, rows)
        self.setMinimumSize(columns * self.MIN_SIDE + margins, rows * self.MIN_SIDE + margins)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._arrange()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        parent = self.parentWidget()
        if parent is not None and parent is not self._watched:
            # A viewport that shrinks below the grid's minimum size does not resize the grid: watch it directly.
            parent.installEventFilter(self)
            self._watched = parent
        self._arrange()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._watched and event.type() == QEvent.Type.Resize:
            self._arrange()
        return False


class CurvePlot(pg.PlotWidget):
    """Named curves over epochs, appended point by point while training runs."""

    def __init__(self, title: str = "", x_label: str = "epoch", parent=None) -> None:
        super().__init__(parent=parent)
        self.getPlotItem().setTitle(title)
        self.getPlotItem().setLabel("bottom", x_label)
        self.addLegend(offset=(-10, 10))
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.data: dict[str, tuple[list[float], list[float]]] = {}

    def add_point(self, name: str, x: float, y: float) -> None:
        if name not in self.curves:
            color = SERIES_COLORS[len(self.curves) % len(SERIES_COLORS)]
            self.curves[name] = self.plot(
                [], [], name=name, pen=pg.mkPen(color, width=2), symbol="o", symbolSize=5, symbolBrush=color
            )
            self.data[name] = ([], [])
        xs, ys = self.data[name]
        xs.append(float(x))
        ys.append(float(y))
        self.curves[name].setData(xs, ys)

    def clear_curves(self) -> None:
        for curve in self.curves.values():
            self.removeItem(curve)
        self.curves.clear()
        self.data.clear()
