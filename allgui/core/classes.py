"""The four classes, in the one fixed order used everywhere, and folder-name aliases for both public releases."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

CLASS_NAMES: tuple[str, ...] = ("Benign", "Early Pre-B", "Pre-B", "Pro-B")
# Column-safe keys, same order: used for CSV columns p_<key>.
CLASS_KEYS: tuple[str, ...] = ("benign", "early_pre_b", "pre_b", "pro_b")
# The one non-malignant class (hematogones); the other three are B-ALL subtypes.
BENIGN: int = 0

_ALIASES: dict[str, int] = {}
for _index, _names in enumerate(
    (
        ("benign", "hematogones", "hematogone"),
        ("early", "early pre-b", "[malignant] early pre-b", "malignant early pre-b", "early_pre_b"),
        ("pre", "pre-b", "[malignant] pre-b", "malignant pre-b", "pre_b"),
        ("pro", "pro-b", "[malignant] pro-b", "malignant pro-b", "pro_b"),
    )
):
    for _name in _names:
        _ALIASES[_name] = _index


class UnknownClassFolderError(ValueError):
    """A folder name that maps to none of the four classes."""


def normalise(name: str) -> str:
    """Lower-case, drop a '[Malignant]'/'Malignant' prefix, and fold separators: 'Early_Pre-B' -> 'early pre b'."""
    text = name.strip().lower()
    text = re.sub(r"^\[?malignant\]?[\s_-]*", "", text)
    return re.sub(r"[\s_\-]+", " ", text).strip()


_NORMALISED_ALIASES = {normalise(alias): index for alias, index in _ALIASES.items()}


def class_index(folder_name: str) -> int | None:
    """Index of the class a folder name stands for, or None when it is not a known alias."""
    return _NORMALISED_ALIASES.get(normalise(folder_name))


def accepted_names() -> list[str]:
    return ["Benign", "Early", "Pre", "Pro", *(f"[Malignant] {n}" for n in ("early Pre-B", "Pre-B", "Pro-B"))]


def resolve_folders(folder_names: Iterable[str], mapping: Mapping[str, str] | None = None) -> dict[str, int]:
    """Map every folder name to a class index, through ``mapping`` (folder -> class name) first, else aliases.

    Raises :class:`UnknownClassFolderError` naming the folders found and the accepted names.
    """
    names = sorted(folder_names)
    resolved: dict[str, int] = {}
    unknown: list[str] = []
    for name in names:
        if mapping is not None and name in mapping:
            target = mapping[name]
            index = CLASS_NAMES.index(target) if target in CLASS_NAMES else class_index(target)
            if index is None:
                raise UnknownClassFolderError(
                    f"mapping sends folder {name!r} to {target!r}, which is not one of {', '.join(CLASS_NAMES)}"
                )
        else:
            index = class_index(name)
        if index is None:
            unknown.append(name)
        else:
            resolved[name] = index
    if unknown:
        raise UnknownClassFolderError(
            f"unknown class folder(s): {', '.join(unknown)}. Folders found: {', '.join(names)}. "
            f"Accepted names (case-insensitive): {', '.join(accepted_names())}; "
            "or map the folders to classes (allgui data check/train --map FOLDER=CLASS, or the retraining wizard's "
            "class mapping)."
        )
    return resolved
