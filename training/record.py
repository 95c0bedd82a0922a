"""Measurement files (training/results): what was measured, when, and by which command."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any


def stamp(module: str, argv: list[str] | None) -> dict[str, str]:
    """The date and the command line of this run of ``python -m module``."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": f"python -m {module} " + shlex.join(sys.argv[1:] if argv is None else argv),
    }


def write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
