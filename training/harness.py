"""What the research scripts share: the data folder argument, ``NAME=MODEL_DIR`` model arguments, a timestamped log,
and the held-out split (each class's last captures, duplicate groups whole) every measurement is made on."""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from allgui.core.dataset import LabelledDataset, PreparedData, load_labelled
from allgui.core.splits import block_split
from training.recipe import DATA_DEFAULT

HELD_OUT_FRACTION = 0.15


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """``--data DIR``: the labelled folder, by default ``$ALLGUI_TEST_DATA`` or the folder beside the repository."""
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("ALLGUI_TEST_DATA", DATA_DEFAULT)))


def named_model(entry: str) -> tuple[str, Path]:
    """A ``NAME=MODEL_DIR`` argument (an argparse ``type``): what the model is called in the results, its folder."""
    name, sep, folder = entry.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=MODEL_DIR, not {entry!r}")
    return name, Path(folder)


def log(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


@dataclass
class HeldOut:
    """A data folder split as every script measures: train on the first part, measure on each class's last
    ``fraction`` of captures."""

    prepared: PreparedData
    train: np.ndarray
    test: np.ndarray
    fraction: float

    @property
    def data(self) -> LabelledDataset:
        return self.prepared.dataset

    @property
    def truth(self) -> np.ndarray:
        return self.data.labels[self.test]

    @property
    def paths(self) -> list[Path]:
        return [self.data.paths[i] for i in self.test]

    @property
    def names(self) -> list[str]:
        return [path.name for path in self.paths]

    def describe(self) -> str:
        """The ``heldout`` line of a results file."""
        return (
            f"last {self.fraction:.0%} of each class by capture number ({len(self.test)} images), "
            "duplicate groups whole"
        )


def held_out(data: Path, fraction: float = HELD_OUT_FRACTION) -> HeldOut:
    prepared = load_labelled(data)
    dataset = prepared.dataset
    train, test = block_split(dataset.labels, dataset.numbers, prepared.group_ids, fraction)
    return HeldOut(prepared, train, test, fraction)
