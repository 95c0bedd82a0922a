"""The SE-CNN recipe the shipped default model is trained with (chosen on held-out capture blocks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The data sits beside the repository: ../shared/data/taleqani-all.
DATA_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "taleqani-all"

RECIPE: dict[str, Any] = {
    "image_size": 96,
    "width": 16,
    "blocks": 5,
    "convs_per_block": 1,
    "epochs": 30,
    "lr": 2e-3,
    "batch_size": 32,
    "patience": 8,
    "normalise": "image",
    "mask_corner": True,
    "seed": 0,
    "threads": 1,
}
