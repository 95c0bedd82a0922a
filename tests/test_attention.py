"""The class-average comparison of SE attention (allgui.core.attention), on numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from allgui.core.attention import ClassAverage, block_differences, class_average


def test_block_differences_are_mean_absolute_differences_per_block() -> None:
    image = [np.array([0.2, 0.8]), np.array([1.0, 0.0, 0.5])]
    average = [np.array([0.4, 0.4]), np.array([0.5, 0.5, 0.5])]
    # block 1: (0.2 + 0.4) / 2; block 2: (0.5 + 0.5 + 0) / 3
    assert block_differences(image, average) == pytest.approx([0.3, 1 / 3])
    assert block_differences(average, average) == [0.0, 0.0]


def test_block_differences_need_one_average_per_block() -> None:
    with pytest.raises(ValueError):
        block_differences([np.zeros(2)], [np.zeros(2), np.zeros(2)])


def test_class_average_gives_the_mean_per_block_and_the_median_distance() -> None:
    images = [
        [np.array([0.0, 1.0]), np.array([0.5])],
        [np.array([0.5, 0.5]), np.array([0.5])],
        [np.array([1.0, 0.0]), np.array([0.8])],
    ]
    average, typical = class_average(images)
    assert isinstance(average, ClassAverage) and average.count == 3
    np.testing.assert_allclose(average.means[0], [0.5, 0.5])
    np.testing.assert_allclose(average.means[1], [0.6])
    # block 1 distances 0.5, 0, 0.5 -> median 0.5; block 2 distances 0.1, 0.1, 0.2 -> median 0.1
    assert typical == pytest.approx([0.5, 0.1])
    means, count = average  # the review tab unpacks it as a pair
    assert count == 3 and len(means) == 2


def test_one_image_is_its_own_average() -> None:
    image = [np.array([0.25, 0.75], dtype=np.float32)]
    average, typical = class_average([image])
    assert average.count == 1 and average.means[0].dtype == np.float64
    np.testing.assert_array_equal(average.means[0], [0.25, 0.75])
    assert typical == [0.0]
