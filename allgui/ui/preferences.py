"""Preferences dialog: the duplicate threshold, the confidence below which an image is flagged for review, the
engine that runs a network, and the reviewer's name that case reports carry."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
)

from allgui.core.models import runtime
from allgui.core.models.runtime import FULL_INSTALL
from allgui.core.settings import Settings

ENGINES = (
    ("auto", "Automatic: ONNX Runtime on the CPU, torch on a GPU"),
    ("onnx", "ONNX Runtime (CPU)"),
    ("torch", "torch (CPU or GPU)"),
)


class PreferencesDialog(QDialog):
    def __init__(self, settings: Settings, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Preferences — AllGUI")
        self.settings = settings
        self.threshold = QSpinBox()
        self.threshold.setRange(0, 16)
        self.threshold.setValue(settings.duplicate_threshold)
        self.threshold.setToolTip(
            "How alike two images must be to count as near-duplicates (look the same): 0 groups only images with the "
            "same fingerprint, higher values group images that differ a little more.\n\nExperts: the largest "
            "Hamming distance, in bits, between the 64-bit perceptual hashes (pHash) of two grouped images."
        )
        self.own_policy = QCheckBox("Use each model's own review policy")
        self.own_policy.setToolTip("The limits each model was given on validation images (see Help → Model card)")
        self.own_policy.setChecked(settings.review_threshold is None)
        self.review = QDoubleSpinBox()
        self.review.setRange(0.25, 1.0)
        self.review.setSingleStep(0.05)
        self.review.setDecimals(2)
        self.review.setValue(settings.review_threshold if settings.review_threshold is not None else 0.9)
        self.review.setEnabled(settings.review_threshold is not None)
        self.own_policy.toggled.connect(lambda own: self.review.setEnabled(not own))
        self.engine = QComboBox()
        for value, text in ENGINES:
            self.engine.addItem(text, value)
        # A torch choice carried over to an installation without torch is shown as what runs: automatic.
        shown = "auto" if settings.engine == "torch" and not runtime.torch_installed() else settings.engine
        self.engine.setCurrentIndex(max(0, self.engine.findData(shown)))
        self.engine.setToolTip(
            "What runs the SE-CNN networks. ONNX Runtime is exact and needs no GPU libraries; torch runs them on an "
            "NVIDIA GPU, and models saved by an earlier AllGUI (without an ONNX graph) always run on torch. "
            "On CPUs with bfloat16 units torch is faster, its probabilities a little less exact."
        )
        if not runtime.torch_installed():
            self.engine.model().item(self.engine.findData("torch")).setEnabled(False)
            self.engine.setToolTip(f"{self.engine.toolTip()}\n\n{FULL_INSTALL[0].upper()}{FULL_INSTALL[1:]}.")
        self.reviewer = QLineEdit(settings.reviewer)
        self.reviewer.setMaxLength(120)
        self.reviewer.setPlaceholderText("your name as case reports are to show it")
        self.reviewer.setToolTip("The name written on case reports (File → Export report…) as the reviewer")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Near-duplicate tolerance (0-16):", self.threshold)
        form.addRow("", self.own_policy)
        form.addRow("Flag for review below confidence:", self.review)
        form.addRow("Network engine:", self.engine)
        form.addRow("Reviewer name:", self.reviewer)
        form.addRow(buttons)

    def apply(self) -> tuple[bool, bool, bool]:
        """Write the choices into the settings; returns whether the duplicate threshold, the review threshold and
        the engine changed (the reviewer's name is written too; nothing depends on it changing)."""
        threshold = self.threshold.value()
        review = None if self.own_policy.isChecked() else round(self.review.value(), 2)
        engine = str(self.engine.currentData())
        settings = self.settings
        changed = (
            threshold != settings.duplicate_threshold,
            review != settings.review_threshold,
            engine != settings.engine,
        )
        settings.duplicate_threshold, settings.review_threshold, settings.engine = threshold, review, engine
        settings.reviewer = self.reviewer.text().strip()
        return changed
