"""How one image's SE attention compares with its class: per block, the distance of its channel weights from the
class average, and how far the class's images usually are from that average (without which a distance has no
scale). The review tab shows these; the numbers come from :meth:`Classifier.attention` excitations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

# One image's excitations: one channel-weight vector per SE block.
Excitations = Sequence[np.ndarray]


class ClassAverage(NamedTuple):
    means: list[np.ndarray]  # per block, the mean channel weights of the class's images
    count: int  # images behind the mean


def block_differences(excitations: Excitations, average: Excitations) -> list[float]:
    """Per SE block, the mean absolute difference between an image's channel weights and the class average (0-1)."""
    return [
        float(np.mean(np.abs(np.asarray(e, np.float64) - np.asarray(a, np.float64))))
        for e, a in zip(excitations, average, strict=True)
    ]


def class_average(images: Sequence[Excitations]) -> tuple[ClassAverage, list[float]]:
    """The mean excitation per block over ``images`` (at least one) of one class, and per block the usual distance
    of those images from it (the median of their :func:`block_differences`)."""
    arrays = [[np.asarray(e, dtype=np.float64) for e in image] for image in images]
    means = [np.mean([image[block] for image in arrays], axis=0) for block in range(len(arrays[0]))]
    distances = np.array([block_differences(image, means) for image in arrays])
    return ClassAverage(means, len(arrays)), np.median(distances, axis=0).tolist()
