"""Which way `allgui` goes: the desktop app for no arguments or for paths, a subcommand otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from allgui.cli import main as cli


@pytest.fixture
def gui_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr(cli, "_open_gui", lambda argv: calls.append(list(argv)) or 0)
    return calls


def test_no_arguments_and_paths_open_the_app(tmp_path: Path, gui_calls: list[list[str]]) -> None:
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    assert cli.main([]) == 0
    assert cli.main([str(tmp_path), str(image)]) == 0
    assert gui_calls == [[], [str(tmp_path), str(image)]]


def test_subcommands_and_usage_errors_stay_headless(
    tmp_path: Path, gui_calls: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    # An empty folder is a usage error now (issue 17: an empty run looked like success), and still headless.
    assert cli.main(["dedupe", str(tmp_path)]) == 2
    assert "no images found" in capsys.readouterr().err
    assert cli.main(["no-such-command"]) == 2
    assert gui_calls == []
    assert "is not a command" in capsys.readouterr().err
