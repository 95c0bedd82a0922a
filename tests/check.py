"""The static checks that run before the test suite: import contracts, lint, formatting.

    .venv/bin/python -m tests.check

Part of the README's test command and of .ci/run. Runs all three (a person sees every problem at once) and exits
non-zero when any fails. The tools are the ones installed next to this Python (the test extra pins them).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# --no-cache: import-linter would otherwise leave a cache folder in the checkout.
CHECKS = (
    ("lint-imports", "--no-cache"),
    ("ruff", "check", "."),
    ("ruff", "format", "--check", "."),
)


def tool(name: str) -> str:
    """The venv's own executable, so the pinned version runs whatever PATH says."""
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit(f'{name} is not installed next to {sys.executable}: pip install -e ".[test]"')
    return found


def main() -> int:
    failed = []
    for name, *args in CHECKS:
        command = [tool(name), *args]
        print(f"$ {name} {' '.join(args)}", flush=True)
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            failed.append(" ".join([name, *args]))
    if failed:
        print(f"checks FAILED: {'; '.join(failed)}", file=sys.stderr)
        return 1
    print("checks passed: import contracts, ruff check, ruff format")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
