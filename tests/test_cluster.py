"""`allgui classify --cluster` and ``classify_paths(client=...)`` on real dask clusters of worker processes: the
same rows as a run here, the model loaded once per worker, a worker killed with SIGKILL and a client killed mid-run
losing and repeating nothing, Ctrl-C, and the clear messages of a missing extra or an unreachable scheduler.

One cluster of two workers runs in its own process for the module (``scheduler``); the CLI reaches it with
``--cluster tcp://...``. Two tests start ``--cluster local:2`` themselves, as a person would.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from distributed import Client

from allgui.cli import classify as classify_command_line
from allgui.core import cluster
from allgui.core.classify import classify_paths, journal_path_for, parse_rows
from allgui.core.dataset import LabelledDataset
from allgui.core.models.store import LoadedModel, ModelStore
from tests.imagefactory import bad_files
from tests.realsubset import spread_indices

REPO = Path(__file__).resolve().parent.parent
MODEL = "secnn-default"
PROBABILITIES = ("p_benign", "p_early_pre_b", "p_pre_b", "p_pro_b", "confidence")
# Started with `python -c`: a spawned worker process re-imports no main module.
SERVE = """
import sys
from allgui.core.cluster import start_local_cluster
cluster = start_local_cluster(2)
print(cluster.scheduler_address, flush=True)
sys.stdin.read()  # until the test closes stdin
cluster.close()
"""
# `allgui` with dask and distributed unimportable, as where the cluster extra is not installed.
WITHOUT_DASK = """
import sys
class NoDask:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dask", "distributed"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoDask())
from allgui.cli.main import main
code = main(sys.argv[1:])
assert not any(name.split(".")[0] in ("dask", "distributed") for name in sys.modules), "dask was imported"
sys.exit(code)
"""


def run_cli(*args: object, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "allgui", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def classify_command(files: Path, out: Path, *options: object) -> list[str]:
    command = [sys.executable, "-m", "allgui", "classify", str(files), "--model", MODEL, "--out", str(out)]
    return command + [str(option) for option in options]


def read_rows(path: Path) -> dict[str, dict]:
    rows = parse_rows(path.read_text(encoding="utf-8"))
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)), [p for p, n in Counter(paths).items() if n > 1]  # each image once
    return {row["path"]: row for row in rows}


def journal_keys(journal: Path) -> list[str]:
    """The paths of the journal's complete rows (a line cut short by a kill is not one)."""
    keys = []
    for raw in journal.read_bytes().split(b"\n")[1:-1]:
        try:
            keys.append(os.path.abspath(json.loads(raw)["path"]))
        except ValueError:
            break
    return keys


def same_rows(rows: dict[str, dict], reference: dict[str, dict]) -> None:
    assert rows.keys() == reference.keys()
    for path, want in reference.items():
        got = rows[path]
        for column, value in want.items():
            if column in PROBABILITIES and value not in (None, ""):
                assert abs(float(got[column]) - float(value)) <= 1e-5, (path, column, got[column], value)
            else:
                assert got[column] == value, (path, column, got[column], value)


def run_until(command: list[str], journal: Path, rows: int, **popen: object) -> subprocess.Popen:
    """Start ``command`` and return it, running, once ``journal`` holds at least ``rows`` finished rows."""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_bytes().count(b"\n") > rows:
            break
        if process.poll() is not None:
            pytest.fail(f"classify ended (status {process.returncode}) before {rows} rows: {process.stderr.read()}")
        time.sleep(0.005)
    assert process.poll() is None, "classify finished before it could be stopped"
    return process


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """The address of a cluster of two single-thread worker processes, running for the module."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        address = server.stdout.readline().strip()
        assert address.startswith("tcp://"), f"the cluster did not start (status {server.poll()})"
        yield address
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    return ModelStore().load(MODEL)


@pytest.fixture(scope="module")
def dataset(data_dir: Path) -> LabelledDataset:
    return LabelledDataset.from_folder(data_dir)


def linked(dataset: LabelledDataset, folder: Path, per_class: int) -> Path:
    """A folder of links to ``per_class`` real images per class (no image is copied)."""
    for index in spread_indices(dataset, per_class):
        source = dataset.paths[index]
        link = folder / source.parent.name / source.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source.resolve())
    return folder


@pytest.fixture(scope="module")
def sixty(dataset: LabelledDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 real images, a copy of one of them (a duplicate pair) and a corrupt file that no worker can decode."""
    folder = linked(dataset, tmp_path_factory.mktemp("sixty"), 15)
    original = sorted(folder.rglob("*.jpg"))[7]
    shutil.copyfile(original, folder / "copy-of-an-image.jpg")
    shutil.copyfile(bad_files(tmp_path_factory.mktemp("bad"))["corrupt"], folder / "corrupt.jpg")
    return folder


@pytest.fixture(scope="module")
def eight_hundred(dataset: LabelledDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return linked(dataset, tmp_path_factory.mktemp("eight-hundred"), 200)


@pytest.fixture(scope="module")
def reference(sixty: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The rows of the sixty images classified here, as the CLI exports them."""
    out = tmp_path_factory.mktemp("reference") / "here.json"
    result = run_cli("classify", sixty, "--model", MODEL, "--out", out)
    assert result.returncode == 0, result.stderr
    return read_rows(out)


def test_local_2_gives_the_rows_of_a_run_here(sixty: Path, reference: dict[str, dict], tmp_path: Path) -> None:
    out = tmp_path / "cluster.json"
    result = run_cli("classify", sixty, "--model", MODEL, "--out", out, "--cluster", "local:2", "--chunk-size", "8")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "loaded on 2 workers" in result.stderr
    rows = read_rows(out)
    same_rows(rows, reference)  # classes, probabilities, review flags, duplicate groups, errors
    copy = rows[str(sixty / "copy-of-an-image.jpg")]
    assert copy["duplicate_group"] not in (None, "")
    assert sum(row["duplicate_group"] == copy["duplicate_group"] for row in rows.values()) >= 2
    corrupt = rows[str(sixty / "corrupt.jpg")]
    assert corrupt["error"] and corrupt["predicted"] in (None, "")  # a file the worker cannot read: an error row
    assert sum(1 for row in rows.values() if row["needs_review"]) > 0
    assert not journal_path_for(out).exists()


def test_each_worker_loads_the_model_once_and_the_api_gives_the_same_rows(
    scheduler: str, loaded: LoadedModel, sixty: Path, tmp_path: Path
) -> None:
    paths = sorted(sixty.rglob("*.jpg")) + [sixty / "removed-after-the-listing.jpg"]
    here = classify_paths(paths, loaded)
    shown: list[str] = []
    with Client(scheduler) as client:
        twice = [  # 16 tasks a run
            classify_paths(paths, loaded, client=client, chunk_size=4, progress=lambda d, t, m: shown.append(m))
            for _ in range(2)
        ]
        name = cluster.ModelPlugin(loaded).name
        loads = client.run(cluster.load_count, name)
        states = client.run(cluster.worker_state, name)
    assert list(loads.values()) == [1, 1], loads  # two workers, 32 tasks, one load each
    sent = pickle.loads(pickle.dumps(cluster.ModelPlugin(loaded)))  # what travels: the files, never the classifier
    assert sent.loaded is None and set(sent.files) == {*loaded.manifest["files"], "manifest.json"}
    for state in states.values():  # local:N's environment reached the workers
        assert state["decode_workers"] == 1 and state["environment"]["ALLGUI_INFERENCE_THREADS"] == "1"
    for rows in twice:
        assert [row.path for row in rows] == [row.path for row in here]
        for got, want in zip(rows, here, strict=True):
            assert bool(got.phash) == bool(want.phash) and (got.probabilities is None) == (want.probabilities is None)
            assert got.predicted == want.predicted and got.error == want.error
            assert got.reasons == want.reasons
            assert got.duplicate_group == want.duplicate_group
            assert (got.probabilities or [0] * 4) == pytest.approx(want.probabilities or [0] * 4, abs=1e-5)
    assert shown[-1].startswith(f"{len(paths)} of {len(paths)}") and shown[-1].endswith("· 2 workers"), shown[-1]
    missing = twice[0][-1]  # a file gone by the time a worker reads it: an error row, not a failed run
    assert missing.path == str(paths[-1]) and missing.error and missing.probabilities is None


def test_a_row_sent_back_twice_is_journalled_once(
    loaded: LoadedModel, sixty: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the cluster sends (a task's rows again after a retry), a path is journalled and exported once."""
    paths = sorted(sixty.rglob("*.jpg"))[:10]
    here = {row.path: row for row in classify_paths(paths, loaded)}
    # As classify_chunk sends them: absolute paths, no duplicate column.
    sent = [dataclasses.replace(row, path=os.path.abspath(row.path), duplicate_group=None) for row in here.values()]

    def twice(client: object, keys: list[str], loaded: LoadedModel, **options: object) -> Iterator:
        assert keys == [os.path.abspath(path) for path in paths]  # absolute paths go out
        yield [dataclasses.replace(row) for row in sent[:6]], 2
        yield [dataclasses.replace(row) for row in sent[3:]], 2  # rows 3-5 again

    monkeypatch.setattr(cluster, "stream_rows", twice)
    journal = tmp_path / "run.journal.jsonl"
    rows = classify_paths(paths, loaded, client=object(), journal=journal)
    assert journal_keys(journal) == [os.path.abspath(path) for path in paths]  # each once
    assert [row.path for row in rows] == [str(path) for path in paths]
    assert all(row.predicted == here[row.path].predicted for row in rows)


def test_a_worker_killed_mid_run_loses_and_repeats_nothing(scheduler: str, eight_hundred: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    journal = journal_path_for(out)
    with Client(scheduler) as client:
        victim = next(iter(client.run(os.getpid).values()))
        command = classify_command(eight_hundred, out, "--cluster", scheduler, "--chunk-size", "8")
        process = run_until(command, journal, 16)
        os.kill(victim, signal.SIGKILL)
        _, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
        client.wait_for_workers(2, timeout=60)  # the nanny starts a new worker, for the tests after this one
    rows = read_rows(out)  # every image exactly once
    assert len(rows) == 800 and all(row["predicted"] and not row["error"] for row in rows.values())


def test_resume_after_the_client_is_killed_here_and_on_the_cluster(
    scheduler: str, eight_hundred: Path, tmp_path: Path
) -> None:
    """Started here and killed, resumed on the cluster and killed, finished here: nothing lost or repeated."""
    out = tmp_path / "results.json"
    journal = journal_path_for(out)
    runs = [("here", ["--batch-size", "8"], 24), ("cluster", ["--cluster", scheduler, "--chunk-size", "16"], 80)]
    seen: dict[str, dict] = {}
    for where, options, rows in runs:
        resume = ["--resume"] if seen else []
        process = run_until(classify_command(eight_hundred, out, *options, *resume), journal, len(seen) + rows)
        process.kill()  # SIGKILL: no handler, no cleanup
        process.wait(timeout=30)
        process.stderr.close()
        keys = journal_keys(journal)
        assert len(keys) == len(set(keys)), f"a row journalled twice ({where})"
        assert set(seen) <= set(keys)  # the rows of the run before are kept
        assert len(keys) < 800
        for raw in journal.read_bytes().split(b"\n")[1 : len(keys) + 1]:
            row = json.loads(raw)
            seen.setdefault(os.path.abspath(row["path"]), row)
    result = run_cli("classify", eight_hundred, "--model", MODEL, "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    assert f"resuming: {len(seen)} already done, {800 - len(seen)} to go" in result.stderr
    rows = read_rows(out)
    assert len(rows) == 800
    for path, row in rows.items():
        earlier = seen.get(os.path.abspath(path))
        if earlier is not None:  # kept from the journal, not classified again
            assert row["predicted"] == earlier["predicted"]
            assert row["confidence"] == pytest.approx(earlier["confidence"], abs=1e-6)


def test_a_lost_scheduler_stops_the_run_with_its_rows_kept(eight_hundred: Path, tmp_path: Path) -> None:
    server = subprocess.Popen([sys.executable, "-c", SERVE], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        address = server.stdout.readline().decode().strip()
        out = tmp_path / "results.json"
        journal = journal_path_for(out)
        command = classify_command(eight_hundred, out, "--cluster", address, "--chunk-size", "8")
        process = run_until(command, journal, 16, env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"})
        server.kill()  # the scheduler and, with it, its workers
        _, stderr = process.communicate(timeout=120)
    finally:
        server.kill()
        server.wait()
        server.stdin.close()
        server.stdout.close()
    assert process.returncode == 1, stderr
    assert "lost the connection to the scheduler" in stderr and "rerun with --resume" in stderr
    assert "Traceback" not in stderr
    result = run_cli("classify", eight_hundred, "--model", MODEL, "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    assert len(read_rows(out)) == 800


def test_ctrl_c_stops_local_workers_and_the_run_resumes_on_a_cluster(
    scheduler: str, eight_hundred: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.json"
    journal = journal_path_for(out)
    command = classify_command(eight_hundred, out, "--cluster", "local:2", "--chunk-size", "8")
    process = run_until(command, journal, 16, start_new_session=True)
    workers = {child.pid for child in psutil.Process(process.pid).children(recursive=True)}
    assert len(workers) >= 2
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the command and its worker processes
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "rerun with --resume" in stderr
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if psutil.pid_exists(pid)], "worker processes left running"
    keys = journal_keys(journal)
    assert 16 <= len(keys) < 800 and len(keys) == len(set(keys))
    result = run_cli("classify", eight_hundred, "--model", MODEL, "--out", out, "--resume", "--cluster", scheduler)
    assert result.returncode == 0, result.stderr
    assert len(read_rows(out)) == 800


def test_without_the_extra_cluster_says_which_to_install(sixty: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-c", WITHOUT_DASK, "classify", str(sixty), "--model", MODEL]
    result = subprocess.run([*command, "--cluster", "local:2"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert 'pip install "allgui[cluster]"' in result.stderr and "Traceback" not in result.stderr
    out = tmp_path / "here.csv"
    result = subprocess.run([*command, "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr  # a run here needs no dask (and imports none)
    assert out.exists()


def test_an_unreachable_scheduler_or_a_bad_address_is_a_clear_error(sixty: Path) -> None:
    started = time.monotonic()
    result = run_cli(
        "classify", sixty, "--cluster", "tcp://127.0.0.1:9", env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    )
    assert result.returncode == 2
    assert "cannot reach the scheduler at tcp://127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 60
    for address in ("scheduler-host", "local:0", "local:two"):
        result = run_cli("classify", sixty, "--cluster", address)
        assert result.returncode == 2 and "--cluster" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("classify", sixty, "--chunk-size", "8")
    assert result.returncode == 2 and "--chunk-size is for a --cluster run" in result.stderr
    assert (classify_command_line.MIN_CHUNK, classify_command_line.MAX_CHUNK) == (cluster.MIN_CHUNK, cluster.MAX_CHUNK)
