"""The SE-CNN recipe the shipped default model is trained with (chosen on held-out capture blocks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from allgui.core.models.secnn.options import RECIPE as SECNN_RECIPE

# The data sits beside the repository: ../shared/data/taleqani-all.
DATA_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "taleqani-all"

# One torch thread: reproducible to the last digit on the CPU, and on a busy 2-core machine faster than two.
RECIPE: dict[str, Any] = {**SECNN_RECIPE, "threads": 1}
