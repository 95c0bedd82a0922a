"""Preferences dialog: the duplicate threshold and the confidence below which an image is flagged for review."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QSpinBox

from allgui.core.settings import Settings


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
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Near-duplicate tolerance (0-16):", self.threshold)
        form.addRow("", self.own_policy)
        form.addRow("Flag for review below confidence:", self.review)
        form.addRow(buttons)

    def apply(self) -> tuple[bool, bool]:
        """Write the choices into the settings; returns (duplicate threshold changed, review threshold changed)."""
        threshold = self.threshold.value()
        review = None if self.own_policy.isChecked() else round(self.review.value(), 2)
        changed = (threshold != self.settings.duplicate_threshold, review != self.settings.review_threshold)
        self.settings.duplicate_threshold = threshold
        self.settings.review_threshold = review
        return changed
