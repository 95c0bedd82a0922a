from __future__ import annotations

import pytest

from allgui.core.classes import CLASS_NAMES, UnknownClassFolderError, class_index, resolve_folders


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Benign", 0),
        ("benign", 0),
        ("Early", 1),
        ("[Malignant] early Pre-B", 1),
        ("early_pre_b", 1),
        ("Early Pre-B", 1),
        ("Pre", 2),
        ("[Malignant] Pre-B", 2),
        ("pre_b", 2),
        ("Pro", 3),
        ("[Malignant] Pro-B", 3),
        ("PRO-B", 3),
    ],
)
def test_aliases(name: str, expected: int) -> None:
    assert class_index(name) == expected


def test_unknown_folder_lists_found_and_accepted() -> None:
    with pytest.raises(UnknownClassFolderError) as caught:
        resolve_folders(["Benign", "Blasts"])
    message = str(caught.value)
    assert "Blasts" in message and "Folders found: Benign, Blasts" in message and "Early" in message


def test_explicit_mapping_wins() -> None:
    assert resolve_folders(["a", "b"], {"a": "Pro-B", "b": "Benign"}) == {"a": 3, "b": 0}
    with pytest.raises(UnknownClassFolderError):
        resolve_folders(["a"], {"a": "Lymphoma"})


def test_fixed_order() -> None:
    assert CLASS_NAMES == ("Benign", "Early Pre-B", "Pre-B", "Pro-B")
