"""The foundation on the real Taleqani images, through the CLI as a script would call it."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from allgui.core.dataset import load_labelled
from allgui.core.splits import block_split


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "allgui", *args], capture_output=True, text=True, timeout=300)


def test_data_check_counts(data_dir: Path) -> None:
    result = _cli("data", "check", str(data_dir), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"] == {"Benign": 428, "Early Pre-B": 837, "Pre-B": 819, "Pro-B": 683}
    assert report["unreadable"] == []
    assert report["duplicate_groups_across_classes"] == []
    assert len(report["duplicate_groups_within_classes"]) >= 24
    assert abs(report["imbalance_ratio"] - 837 / 428) < 1e-9


def test_dedupe_finds_known_near_duplicates(data_dir: Path) -> None:
    result = _cli("dedupe", str(data_dir))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["group", "path", "sha256", "hash", "distance", "kind"]
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        groups[row["group"]].append(row)
    assert len(groups) >= 24  # dozens of pairs
    exact = 0
    for members in groups.values():
        assert len(members) >= 2
        assert len({Path(m["path"]).parent.name for m in members}) == 1  # never across classes
        assert members[0]["distance"] == "0"
        assert all(int(m["distance"]) <= 4 * len(members) for m in members)
        exact += sum(m["kind"] == "exact" for m in members)
    assert exact >= 40  # the release's byte-identical pairs (all in Pro)
    assert "duplicate groups" in result.stderr


def test_dedupe_usage_error_exit_2(tmp_path: Path) -> None:
    assert _cli("dedupe", str(tmp_path / "missing")).returncode == 2
    assert _cli("dedupe").returncode == 2


def test_block_split_on_real_data_keeps_groups_whole(data_dir: Path) -> None:
    prepared = load_labelled(data_dir)
    dataset = prepared.dataset
    train, test = block_split(dataset.labels, dataset.numbers, prepared.group_ids, 0.15)
    assert not set(prepared.group_ids[train]) & set(prepared.group_ids[test])
    assert 0.13 < len(test) / len(dataset) < 0.17
    for label in range(4):
        held = dataset.numbers[test][dataset.labels[test] == label]
        kept = dataset.numbers[train][dataset.labels[train] == label]
        assert np.median(held) > np.percentile(kept, 95)
