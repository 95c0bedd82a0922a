"""What a model folder's ``manifest.json`` may hold, checked before anything in it is used.

A manifest can come from another laboratory or a hand edit, and parts of it steer safety: the review thresholds
decide which images a person must look at, and the sizes decide how much memory loading takes. So every field used
is type- and range-checked here, and the safety-relevant part is covered by a digest (``protected_sha256``) written
when the model is saved: a hand-edited threshold no longer loads silently. The digest is a checksum, not a
signature (whoever writes a whole folder can write a matching one); the bounds are what stop hostile values.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import PurePosixPath
from typing import Any

from allgui.core.statefile import StateFileError, parse_json, read_state_bytes

MANIFEST = "manifest.json"
# 2: the protected digest; manifests of version 1 (saved before it) still load, bounds-checked.
FORMAT_VERSION = 2
MANIFEST_MAX_BYTES = 1 << 20
MAX_FILES = 64
# One id pattern everywhere: it becomes a folder name, so no separators, no "." or "..", no leading dot or dash.
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SHA256 = re.compile(r"[0-9a-f]{64}")
# The manifest fields that change what a model predicts or flags; the digest covers exactly these.
PROTECTED_KEYS = ("kind", "class_names", "input_size", "review", "options", "architecture", "temperature", "n_bits")
INPUT_SIZE = (8, 1024)


class InvalidManifest(ValueError):
    """A manifest field of the wrong type or out of range; ``str()`` says which and why."""


def model_id_problem(model_id: object) -> str | None:
    """Why ``model_id`` cannot name a model folder, or None if it can."""
    if not isinstance(model_id, str) or not MODEL_ID.fullmatch(model_id):
        return (
            f"model id {model_id!r} is not allowed: 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit"
        )
    return None


def check_model_id(model_id: object) -> str:
    if problem := model_id_problem(model_id):
        raise InvalidManifest(problem)
    return str(model_id)


def protected_digest(manifest: dict[str, Any]) -> str:
    covered = {key: manifest.get(key) for key in PROTECTED_KEYS}
    text = json.dumps(covered, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_number(value: object, name: str, low: float, high: float, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not is_number(value) or not low <= float(value) <= high:  # type: ignore[arg-type]
        raise InvalidManifest(f"{name} must be a number from {low:g} to {high:g}, not {value!r}")


def check_review(review: object, *, needs_ood: bool) -> None:
    """The review thresholds: a missing, non-finite or absurd one would silently stop flagging images."""
    if not isinstance(review, dict):
        raise InvalidManifest("review must hold the model's review thresholds")
    if "min_confidence" not in review:
        raise InvalidManifest("review lacks min_confidence")
    # Four classes: the top probability is at least 0.25, so a lower minimum would never flag anything.
    check_number(review["min_confidence"], "review.min_confidence", 0.25, 1.0)
    check_number(review.get("ood_threshold"), "review.ood_threshold", 1e-6, 1e4, optional=not needs_ood)
    # A tiny alert level (a very confident network) flags more, never fewer: only a level above 1 would switch it off.
    check_number(review.get("benign_alert"), "review.benign_alert", 0.0, 1.0, optional=True)


def check_options(options: object, bounds: dict[str, tuple[float, float]], where: str) -> None:
    """Option values a model reads to size itself (image size, widths, counts) within ``bounds``."""
    if not isinstance(options, dict):
        raise InvalidManifest(f"{where} must be a JSON object")
    for name, (low, high) in bounds.items():
        if name in options:
            check_number(options[name], f"{where}.{name}", low, high)


def check_manifest(manifest: object, *, needs_ood: bool = False) -> dict[str, Any]:
    """Raise :class:`InvalidManifest` unless ``manifest`` has the shape and ranges the app relies on."""
    if not isinstance(manifest, dict):
        raise InvalidManifest("the manifest is not a JSON object")
    missing = [key for key in ("id", "kind", "class_names", "files") if key not in manifest]
    if missing:
        raise InvalidManifest(f"lacks {', '.join(missing)}")
    version = manifest.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidManifest(f"format_version must be a whole number, not {version!r}")
    if version > FORMAT_VERSION:
        raise InvalidManifest(f"made by a newer AllGUI (format {version}); update AllGUI to use it")
    if version >= 2 and manifest.get("protected_sha256") != protected_digest(manifest):
        raise InvalidManifest(
            "its classes, review thresholds or model settings were changed after the model was saved (protected_sha256 "
            "differs); re-save or retrain the model instead of editing manifest.json"
        )
    check_model_id(manifest["id"])
    if not isinstance(manifest["kind"], str):
        raise InvalidManifest("kind must be a text")
    names = manifest["class_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidManifest("class_names must be a list of texts")
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise InvalidManifest("'files' must map file names to SHA-256 digests")
    if len(files) > MAX_FILES:
        raise InvalidManifest(f"lists {len(files)} files; a model has at most {MAX_FILES}")
    for name, digest in files.items():
        parts = PurePosixPath(name).parts
        if name.startswith("/") or "\\" in name or not parts or any(p in ("", ".", "..") for p in parts):
            raise InvalidManifest(f"file name {name!r} is not a plain relative path inside the model folder")
        if not isinstance(digest, str) or not SHA256.fullmatch(digest):
            raise InvalidManifest(f"the SHA-256 of {name!r} is not 64 hexadecimal digits")
    size = manifest.get("input_size")
    if size is not None and (
        not isinstance(size, list) or len(size) != 2 or not all(is_number(s) and s == int(s) for s in size)
    ):
        raise InvalidManifest(f"input_size must be [width, height], not {size!r}")
    if size is not None:
        for side in size:
            check_number(side, "input_size", *INPUT_SIZE)
    for key in ("title", "created"):
        if key in manifest and not isinstance(manifest[key], str):
            raise InvalidManifest(f"{key} must be a text")
    check_review(manifest.get("review"), needs_ood=needs_ood)
    return manifest


def read_manifest_file(path: Any) -> object:
    """The parsed manifest file (None if absent); :class:`StateFileError` for a pipe, link out, huge or bad file."""
    data = read_state_bytes(path, MANIFEST_MAX_BYTES)
    return None if data is None else parse_json(data, path)


__all__ = [
    "FORMAT_VERSION",
    "InvalidManifest",
    "StateFileError",
    "check_manifest",
    "check_model_id",
    "check_options",
    "model_id_problem",
    "protected_digest",
]
