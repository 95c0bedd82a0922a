"""The selected image, large, with zoom and pan (pyqtgraph ViewBox) and an optional heat-map overlay."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

HEAT_COLORMAP = pg.colormap.get("inferno")


def heat_rgba(heatmap: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 4) uint8 colours, transparent where there is no attention."""
    values = np.clip(np.nan_to_num(heatmap.astype(np.float32)), 0.0, 1.0)
    lookup = HEAT_COLORMAP.getLookupTable(0.0, 1.0, 256, alpha=False)
    rgba = np.empty((*values.shape, 4), dtype=np.uint8)
    rgba[..., :3] = lookup[(values * 255).astype(np.uint8)]
    rgba[..., 3] = (np.sqrt(values) * 255).astype(np.uint8)
    return rgba


class ImagePanel(QWidget):
    """Mouse wheel zooms, dragging pans, 'Fit' resets; the heat map sits on top with an opacity slider."""

    opacity_changed = Signal(float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget()
        self.view: pg.ViewBox = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image = pg.ImageItem()
        self.overlay = pg.ImageItem()
        self.overlay.setZValue(10)
        self.view.addItem(self.image)
        self.view.addItem(self.overlay)
        self.caption = QLabel("Open images or a folder (Ctrl+O, Ctrl+Shift+O) or drop them here.")
        self.caption.setWordWrap(True)
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("Show the whole image (mouse wheel zooms, drag pans)")
        self.fit_button.clicked.connect(self.fit)
        self.heat_box = QCheckBox("Heat map")
        # Off until asked for: the overlay recolours the stain the technician judges the cells by.
        self.heat_box.setChecked(False)
        self.heat_box.setToolTip(
            "Where the network looked for its answer (bright: most). Experts: Grad-CAM of the last SE block for the "
            "predicted class."
        )
        self.heat_box.toggled.connect(self._apply_opacity)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.setToolTip("Heat-map opacity")
        self.opacity.valueChanged.connect(self._apply_opacity)
        controls = QHBoxLayout()
        controls.addWidget(self.fit_button)
        controls.addWidget(self.heat_box)
        controls.addWidget(QLabel("opacity"))
        controls.addWidget(self.opacity, 1)
        self.legend = QLabel("dark: little attention · yellow: most")
        self.legend.setToolTip("The heat map's colours (inferno): where the network looked, from least to most")
        self.legend.setVisible(False)
        self.heat_box.toggled.connect(self.legend.setVisible)
        controls.addWidget(self.legend)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.caption)
        layout.addLayout(controls)
        self.set_heat_available(False)
        self._shape: tuple[int, int] | None = None

    def set_image(self, array: np.ndarray | None, caption: str = "") -> None:
        self.overlay.clear()
        if array is None:
            self.image.clear()
            self._shape = None
        else:
            first = self._shape is None or self._shape != array.shape[:2]
            self.image.setImage(array, levels=(0, 255))
            self._shape = array.shape[:2]
            if first:
                self.fit()
        self.caption.setText(caption)

    def set_heatmap(self, heatmap: np.ndarray | None) -> None:
        if heatmap is None or self._shape is None:
            self.overlay.clear()
            self.set_heat_available(False)
            return
        self.overlay.setImage(heat_rgba(heatmap), levels=(0, 255))
        height, width = self._shape
        self.overlay.setRect(0, 0, width, height)  # a map at the model's input size still covers the image
        self.set_heat_available(True)
        self._apply_opacity()

    def set_heat_available(self, available: bool) -> None:
        self.heat_box.setEnabled(available)
        self.opacity.setEnabled(available)

    def _apply_opacity(self) -> None:
        value = self.opacity.value() / 100.0 if self.heat_box.isChecked() else 0.0
        self.overlay.setOpacity(value)
        self.opacity_changed.emit(value)

    def fit(self) -> None:
        if self._shape is not None:
            height, width = self._shape
            self.view.setRange(xRange=(0, width), yRange=(0, height), padding=0.01)
