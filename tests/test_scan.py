from __future__ import annotations

import os
from pathlib import Path

import pytest

from allgui.core.scan import scan_images
from tests.imagefactory import jpeg_bytes, smear_like, write


def test_recursive_natural_order_images_only(tmp_path: Path) -> None:
    data = jpeg_bytes(smear_like())
    for name in ("b/img-10.jpg", "b/img-2.JPG", "a/x.png", "a/deep/y.tif", "a/notes.txt", "c.bmp"):
        write(tmp_path / name, data)
    result = scan_images([tmp_path])
    names = [p.relative_to(tmp_path).as_posix() for p in result.files]
    assert names == ["a/deep/y.tif", "a/x.png", "b/img-2.JPG", "b/img-10.jpg", "c.bmp"]
    assert result.problems == []


def test_symlink_loop_terminates(tmp_path: Path) -> None:
    write(tmp_path / "a" / "one.jpg", jpeg_bytes(smear_like()))
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    result = scan_images([tmp_path])
    assert [p.name for p in result.files] == ["one.jpg"]


def test_unreadable_folder_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "ok" / "one.jpg", jpeg_bytes(smear_like()))
    locked = tmp_path / "locked"
    write(locked / "two.jpg", jpeg_bytes(smear_like()))
    real_scandir = os.scandir

    def scandir(path):  # root reads every folder, so refuse this one the way chmod 000 would for a user
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = scan_images([tmp_path])
    assert [p.name for p in result.files] == ["one.jpg"]
    assert [p for p, _ in result.problems] == [locked]
    assert "Permission denied" in result.problems[0][1]


def test_missing_and_non_image_paths_reported(tmp_path: Path) -> None:
    text = write(tmp_path / "a.txt", b"x")
    result = scan_images([tmp_path / "missing", text])
    assert result.files == []
    assert {p.name for p, _ in result.problems} == {"missing", "a.txt"}


def test_same_file_given_twice_listed_once(tmp_path: Path) -> None:
    path = write(tmp_path / "one.jpg", jpeg_bytes(smear_like()))
    assert scan_images([path, tmp_path]).files == [path]
