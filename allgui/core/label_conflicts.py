"""Duplicate groups whose images a technician labelled differently.

Images in one duplicate group look the same (or are the same file), so they should get one label; different labels
inside a group mean that one of them is probably a slip, and a retraining set built from them would contradict
itself. Qt-free: the review tab only shows the result.
"""

from __future__ import annotations

from collections.abc import Iterable


def conflicting_groups(items: Iterable[tuple[int | None, int | None]]) -> dict[int, tuple[int, ...]]:
    """``{group: sorted distinct labels}`` for every group given two or more different labels.

    ``items`` holds one ``(duplicate_group, label)`` pair per image; ``None`` (an image in no group, or not
    labelled) never conflicts with anything.
    """
    labels: dict[int, set[int]] = {}
    for group, label in items:
        if group is not None and label is not None:
            labels.setdefault(group, set()).add(label)
    return {group: tuple(sorted(found)) for group, found in sorted(labels.items()) if len(found) > 1}
