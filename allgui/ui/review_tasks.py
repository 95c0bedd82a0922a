"""The review tab's work in the thread pool: plain core calls, each run by :class:`~allgui.ui.workers.TaskRunner`
with a :class:`~allgui.ui.workers.Task` for progress, partial results and cancelling."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtGui import QImage

from allgui.core.attention import ClassAverage, class_average
from allgui.core.classify import ResultRow, classify_paths, path_key
from allgui.core.duplicates import DuplicateGroup, find_groups
from allgui.core.hashing import HashRecord, hash_images
from allgui.core.imageio import ImageReadError, read_rgb
from allgui.core.models.base import Attention, Classifier
from allgui.core.models.store import LoadedModel
from allgui.core.progress import check
from allgui.core.scan import ScanResult, scan_images
from allgui.ui.workers import Task

BATCH = 32
HASH_WORKERS = 2  # 4 hashed no faster next to the GUI thread, and starved it of the GIL at the start
HASH_DELAY_S = 0.05
WARM_SIZE = 64  # pixels of the image whose attention builds the attention plot's items ahead of the first click
AVERAGES_MESSAGE = "comparing attention with typical images of each class"

# What the class-average task gives: per predicted class the mean excitations (with their image count), and per
# class and block the usual distance of its images from that mean.
ClassAverages = tuple[dict[int, ClassAverage], dict[int, list[float]]]


def has_attention(classifier: Classifier | None) -> bool:
    return classifier is not None and type(classifier).attention is not Classifier.attention


def scan_task(task: Task, paths: Sequence[Path]) -> ScanResult:
    return scan_images(paths, task.progress, task.cancel)


def hash_task(task: Task, paths: Sequence[Path], threshold: int) -> tuple[list[HashRecord], list[DuplicateGroup]]:
    # Let the GUI thread paint the new list and image first: the hashing threads would slow that paint (GIL).
    time.sleep(HASH_DELAY_S)
    check(task.cancel)
    records = hash_images(
        paths,
        progress=lambda d, t, m: task.progress(d, t, f"duplicates: {m}"),
        cancel=task.cancel,
        workers=HASH_WORKERS,
    )
    return records, find_groups(records, threshold)


def predict_task(task: Task, loaded: LoadedModel, paths: Sequence[Path]) -> int:
    """Classify ``paths`` as ``allgui classify`` and the Batch tab do (:func:`allgui.core.classify.classify_paths`);
    each image becomes ``(index, row)``, the row with an ``error`` for a file that could not be classified."""
    indices: dict[str, list[int]] = {}
    for index, path in enumerate(paths):
        indices.setdefault(path_key(path), []).append(index)  # classify_paths gives one row per file

    def partial(rows: list[ResultRow]) -> None:
        for row in rows:
            for index in indices.get(path_key(row.path), []):
                task.partial((index, row))

    # The tab's own hash pass (hash_task) has grouped the duplicates already: not hashed a second time here.
    classify_paths(
        paths,
        loaded,
        batch_size=BATCH,
        progress=task.progress,
        cancel=task.cancel,
        on_rows=partial,
        group_duplicates=False,
    )
    return len(paths)


class ThumbnailQueue:
    """Paths waiting for a gallery thumbnail, taken newest first (what is on screen now) and bounded: after fast
    scrolling the old requests are dropped, and the gallery asks for those images again when it paints them."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._paths: OrderedDict[Path, None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._paths)

    def push(self, path: Path) -> list[Path]:
        """Queue ``path`` (first in line); returns the oldest paths dropped to stay within the limit."""
        with self._lock:
            self._paths[path] = None
            self._paths.move_to_end(path)
            dropped = []
            while len(self._paths) > self.limit:
                dropped.append(self._paths.popitem(last=False)[0])
            return dropped

    def pop(self) -> Path | None:
        with self._lock:
            return self._paths.popitem(last=True)[0] if self._paths else None

    def clear(self) -> None:
        with self._lock:
            self._paths.clear()


def thumbnail(path: Path, size: int) -> QImage | None:
    """A ``size`` px (longest side) thumbnail; None for a file that cannot be read. JPEGs are decoded at reduced
    size (draft), several times faster than the full image."""
    try:
        image = read_rgb(path, draft=(size, size))
    except ImageReadError:
        return None
    if max(image.size) > size:
        image.thumbnail((size, size), Image.Resampling.BILINEAR)
    width, height = image.size
    data = image.tobytes()
    # QImage (unlike QPixmap) may be made off the GUI thread; the converted copy owns its pixels, not ``data``.
    return QImage(data, width, height, 3 * width, QImage.Format.Format_RGB888).convertToFormat(
        QImage.Format.Format_RGB32
    )


def thumbnail_task(task: Task, queue: ThumbnailQueue, size: int) -> int:
    """Make thumbnails until the queue is empty; each arrives as ``(path, QImage or None)``."""
    done = 0
    while (path := queue.pop()) is not None:
        check(task.cancel)
        task.partial((path, thumbnail(path, size)))
        done += 1
    return done


def attention_task(task: Task, classifier: Classifier, path: Path, key: Any) -> tuple[Any, Attention | None]:
    return key, classifier.attention(classifier.read(path))


def prefetch_task(task: Task, classifier: Classifier, wanted: list[tuple[Any, Path]], cache: dict) -> int:
    """Fill the attention cache for images the technician is likely to open next (plain dict writes are atomic)."""
    for key, path in wanted:
        check(task.cancel)
        if key not in cache:
            try:
                cache[key] = classifier.attention(classifier.read(path))
            except ImageReadError:
                continue
    return len(wanted)


def warm_attention_task(task: Task, classifier: Classifier) -> Attention | None:
    """The model's attention for a plain grey image: only its block layout matters (see
    AttentionController.warm)."""
    return classifier.attention(Image.new("RGB", (WARM_SIZE, WARM_SIZE), (200, 190, 210)))


def class_average_task(task: Task, classifier: Classifier, by_class: dict[int, list[Path]]) -> ClassAverages:
    """Per predicted class, over a sample of its loaded images: the mean SE excitation per block, with the number of
    images, and how far those images usually lie from that mean (:func:`allgui.core.attention.class_average`)."""
    averages: dict[int, ClassAverage] = {}
    typical: dict[int, list[float]] = {}
    total = sum(len(paths) for paths in by_class.values())
    done = 0
    for class_index, paths in by_class.items():
        images = []
        for path in paths:
            check(task.cancel)
            done += 1
            try:
                attention = classifier.attention(classifier.read(path))
            except ImageReadError:
                continue
            if attention is None:
                return {}, {}
            images.append(attention.excitations)
            task.progress(done, total, AVERAGES_MESSAGE)
        if images:
            averages[class_index], typical[class_index] = class_average(images)
    return averages, typical
