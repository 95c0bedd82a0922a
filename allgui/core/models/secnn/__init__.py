"""The SE-CNN classifier: its options (:mod:`.options`), network (:mod:`.net`), training augmentation
(:mod:`.augmentation`), training (:mod:`.trainer`) and the classifier itself (:mod:`.classifier`)."""

from allgui.core.models.secnn.classifier import (
    CALIBRATION_FILE,
    CONFIG_FILE,
    CORNER_BOX,
    WEIGHTS_FILE,
    SECNNClassifier,
)
from allgui.core.models.secnn.options import DEFAULTS, OPTION_BOUNDS, SECNNOptions

__all__ = [
    "CALIBRATION_FILE",
    "CONFIG_FILE",
    "CORNER_BOX",
    "DEFAULTS",
    "OPTION_BOUNDS",
    "WEIGHTS_FILE",
    "SECNNClassifier",
    "SECNNOptions",
]
