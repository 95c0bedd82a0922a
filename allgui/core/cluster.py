"""Classifying on a ``dask.distributed`` cluster: the workers decode and run the model, the client journals.

Used through :func:`allgui.core.classify.classify_paths` with ``client=`` (the CLI's ``--cluster``); needs the
cluster extra (``pip install "allgui[cluster]"``: dask and distributed), which is why only this module imports them.

- Each worker loads the model once: :class:`ModelPlugin` carries the model's files (bytes, checked against the
  manifest's SHA-256 on the client), writes them into the worker's local folder and loads them with
  :func:`~allgui.core.models.store.load_model`, which verifies every file again. The classifier is never pickled,
  and the model folder need not be on storage the workers can read.
- The paths go out in chunks (a task of 16-128 paths), at most a few tasks per worker thread in flight, so the
  client holds a bounded number of futures however many images there are; rows come back in order of completion
  and :func:`classify_paths` journals them as it does for a local run (the journal does not say where it ran).
- A task whose worker dies is run again by the scheduler (and ``retries`` times after an error of its own); a row
  for a path already finished is never journalled twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import dask
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

from allgui.core.journal import model_digest, path_key
from allgui.core.models.base import ReviewPolicy
from allgui.core.models.manifest import MANIFEST
from allgui.core.models.runtime import usable_cores
from allgui.core.models.store import LoadedModel, load_model
from allgui.core.progress import CancelToken, LogCallback, check
from allgui.core.result import ResultRow

# Paths per task: big enough that a task's overhead (a few milliseconds) is nothing next to its images, small enough
# that the last tasks of a run spread over the workers and a lost worker costs little.
MIN_CHUNK = 16
MAX_CHUNK = 128
CHUNKS_PER_THREAD = 4  # a run has at least this many tasks per worker thread, where the images allow
# Tasks in flight per worker thread: one running, the next ones already there when it finishes.
WINDOW_PER_THREAD = 3
# A task that failed by itself (not by its worker dying, which the scheduler retries anyway) is run this often more.
RETRIES = 2
# How long a task waits for its worker to finish loading the model.
LOAD_WAIT_S = 300
# How often the workers' count is asked for (for the window and the progress line).
WORKERS_EVERY_S = 1.0
LOCAL_PREFIX = "local:"
# dask's defaults for its worker processes that cost a run of many small images CPU time: glibc returning freed
# memory to the system at once (MALLOC_TRIM_THRESHOLD_=65536: each decoded image's buffers are then mapped and
# zeroed afresh, twice the system time) and a statistical profiler sampling every thread 100 times a second. The
# nannies pass this configuration on to the worker processes, also to one started in place of a lost worker.
LOCAL_CONFIG = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
}

# Models loaded in this (worker) process, by plugin name: what the tests read back to see one load per worker.
_LOADS: dict[str, int] = {}


class ClusterError(RuntimeError):
    """A cluster that cannot be reached or cannot classify; ``str()`` says what happened and what to do."""


class ClusterModelError(RuntimeError):
    """Raised in a worker's task when the model could not be loaded there."""


def local_workers(address: str) -> int | None:
    """N for ``local:N``, None for a scheduler address; ValueError for ``local:`` without a positive number."""
    if not address.startswith(LOCAL_PREFIX):
        return None
    count = address[len(LOCAL_PREFIX) :]
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"{address!r}: write local:N with N the number of worker processes, e.g. local:4")
    return int(count)


def worker_environment(workers: int, cores: int | None = None) -> dict[str, str]:
    """Environment of the worker processes of ``local:N``: each takes its share of the cores for decoding and the
    network, so N workers on one machine do not run N times the threads a single run would."""
    share = max(1, (cores or usable_cores()) // workers)
    network = max(1, share // 2)
    return {
        "ALLGUI_DECODE_WORKERS": str(min(4, share)),
        "ALLGUI_INFERENCE_THREADS": str(network),
        "OMP_NUM_THREADS": str(network),
        "MKL_NUM_THREADS": str(network),
        "OPENBLAS_NUM_THREADS": str(network),
    }


@contextlib.contextmanager
def _interrupts_ignored() -> Iterator[None]:
    """Ctrl-C ignored while worker processes are started: they inherit that, so a Ctrl-C in the terminal (sent to
    the whole process group) reaches only the command, which stops the run and the workers cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def start_local_cluster(workers: int) -> LocalCluster:
    """A cluster of ``workers`` processes of one thread each on this machine (no dashboard, quiet logs)."""
    with _interrupts_ignored(), dask.config.set(LOCAL_CONFIG):
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # No dashboard; the scheduler's HTTP server (health, metrics) on a free port, not on 8787, which another
            # run may hold (dask would warn, then take another port).
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
            env=worker_environment(workers),
        )


@contextlib.contextmanager
def connect(address: str, log: LogCallback | None = None) -> Iterator[Client]:
    """A client of ``local:N`` (started here, stopped on leaving) or of the scheduler at ``address``.

    The time allowed to reach a scheduler is dask's ``distributed.comm.timeouts.connect`` (30 s; the environment
    variable ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT`` sets it). :class:`ClusterError` when it cannot be reached.
    """
    log = log or (lambda _: None)
    try:
        workers = local_workers(address)
    except ValueError as error:
        raise ClusterError(str(error)) from None
    cluster = None
    if workers is not None:
        log(f"starting a local cluster of {workers} worker process{'es' if workers > 1 else ''}")
        try:
            cluster = start_local_cluster(workers)
            client = Client(cluster)
        except Exception as error:  # noqa: BLE001 - e.g. no free port, a worker that cannot start
            if cluster is not None:
                cluster.close()
            raise ClusterError(f"cannot start a local cluster ({type(error).__name__}: {error})") from None
    else:
        try:
            client = Client(address)
        except (OSError, TimeoutError) as error:
            raise ClusterError(
                f"cannot reach the scheduler at {address} ({error}); is the cluster running, and is the address "
                "(tcp://HOST:PORT) the one it printed?"
            ) from None
        except ValueError as error:  # an address dask cannot parse
            raise ClusterError(f"{address!r} is not a scheduler address ({error}); e.g. tcp://host:8786") from None
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()


# ---- the model on the workers -------------------------------------------------------------------------------------


def model_files(loaded: LoadedModel) -> dict[str, bytes]:
    """The model folder's files and manifest as bytes, each checked against the SHA-256 its manifest lists."""
    files: dict[str, bytes] = {}
    try:
        for name, expected in sorted(loaded.manifest["files"].items()):
            data = (loaded.folder / name).read_bytes()
            if hashlib.sha256(data).hexdigest() != expected:
                raise ClusterError(f"{loaded.folder}: {name} was changed since the model was loaded (SHA-256 differs)")
            files[name] = data
        files[MANIFEST] = (loaded.folder / MANIFEST).read_bytes()
    except OSError as error:
        raise ClusterError(f"{loaded.folder}: the model's files cannot be read to send them ({error})") from None
    return files


class ModelPlugin(WorkerPlugin):
    """Loads and verifies the model once in every worker, as the worker joins (also a replacement worker).

    Registered under a name derived from the model's digest, engine, device and review policy: registering it
    again (another run on the same cluster) keeps the workers' loaded model (``idempotent``).
    """

    idempotent = True

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        engine: str = "auto",
        device: str = "auto",
        ignore_interrupts: bool = False,
    ) -> None:
        self.model_id = loaded.id
        self.digest = model_digest(loaded)
        self.files = model_files(loaded)
        self.engine = engine
        self.device = device
        self.review = loaded.classifier.review.to_dict()
        self.ignore_interrupts = ignore_interrupts
        settings = json.dumps([self.digest, engine, device, self.review], sort_keys=True)
        self.name = f"allgui-model-{hashlib.sha256(settings.encode()).hexdigest()[:16]}"
        self._reset()

    def _reset(self) -> None:
        self.loaded: LoadedModel | None = None
        self.problem: str | None = None
        self.runs_on = ""
        self.folder: Path | None = None
        self.lock = threading.Lock()
        self.ready = threading.Event()  # set once loading ended, well or not

    def __getstate__(self) -> dict[str, Any]:  # what travels: the files and settings, never a loaded model
        keep = ("model_id", "digest", "files", "engine", "device", "review", "ignore_interrupts", "name")
        return {key: self.__dict__[key] for key in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    async def setup(self, worker: Any) -> None:
        if self.ignore_interrupts and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a restarted local worker, as start_local_cluster's
        # Off the worker's event loop, which keeps answering the scheduler's heartbeats meanwhile.
        await asyncio.get_running_loop().run_in_executor(None, self._load, Path(worker.local_directory))

    def _load(self, directory: Path) -> None:
        try:
            folder = Path(tempfile.mkdtemp(prefix="allgui-model-", dir=directory)) / self.model_id
            self.folder = folder.parent
            for name, data in self.files.items():
                relative = PurePosixPath(name)
                if relative.is_absolute() or ".." in relative.parts:
                    raise ClusterModelError(f"the model file name {name!r} leaves the model folder")
                (folder / relative).parent.mkdir(parents=True, exist_ok=True)
                (folder / relative).write_bytes(data)
            loaded = load_model(folder)  # verifies every file's SHA-256 again, here
            if model_digest(loaded) != self.digest:
                raise ClusterModelError("the files that arrived are not the model the client loaded")
            loaded.classifier.set_device(self.device)
            loaded.classifier.set_engine(self.engine)
            loaded.classifier.review = ReviewPolicy.from_dict(self.review)
            self.runs_on = f"{loaded.classifier.engine_name} on {loaded.classifier.device_name}"  # starts the engine
            self.loaded = loaded
            _LOADS[self.name] = _LOADS.get(self.name, 0) + 1
        except Exception as error:  # noqa: BLE001 - reported to the client, which stops the run with it
            self.problem = f"{type(error).__name__}: {error}"
        finally:
            self.ready.set()

    def teardown(self, worker: Any) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def worker_state(name: str, dask_worker: Any = None) -> dict[str, Any]:
    """What a worker says of the model plugin ``name`` (run there with ``client.run``)."""
    from allgui.core import classify

    plugin = dask_worker.plugins.get(name) if dask_worker is not None else None
    return {
        "pid": os.getpid(),
        "loads": _LOADS.get(name, 0),
        "problem": None if plugin is None else plugin.problem,
        "registered": plugin is not None,
        "runs_on": "" if plugin is None else plugin.runs_on,
        "decode_workers": classify.decode_workers(),
        "environment": {key: os.environ.get(key) for key in worker_environment(1)},
    }


def register_model(
    client: Client, loaded: LoadedModel, *, engine: str = "auto", device: str = "auto", log: LogCallback | None = None
) -> str:
    """Load the model on every worker (once: a worker that has it keeps it) and return the plugin's name."""
    log = log or (lambda _: None)
    local = isinstance(client.cluster, LocalCluster)  # its workers leave a terminal's Ctrl-C to the command
    plugin = ModelPlugin(loaded, engine=engine, device=device, ignore_interrupts=local)
    client.register_plugin(plugin, name=plugin.name)
    states = client.run(worker_state, plugin.name)
    for address, state in sorted(states.items()):
        if state["problem"] or not state["registered"]:
            raise ClusterError(
                f"the worker at {address} cannot use the model {loaded.id}: {state['problem'] or 'it was not set up'}"
            )
    if states:
        runs_on = ", ".join(sorted({state["runs_on"] for state in states.values()}))
        log(f"model {loaded.id} loaded on {len(states)} worker{'s' if len(states) > 1 else ''}: {runs_on}")
    else:
        log("the cluster has no workers yet: the images wait for workers to join")
    return plugin.name


def classify_chunk(name: str, paths: Sequence[str], batch_size: int) -> list[ResultRow]:
    """The task a worker runs: :func:`classify_paths` with the model its plugin loaded (rows without the duplicate
    column, which the client fills in over the whole run)."""
    from allgui.core.classify import classify_paths

    worker = get_worker()
    plugin = worker.plugins.get(name)
    if plugin is None:
        raise ClusterModelError(f"the model was not set up on the worker at {worker.address}")
    plugin.ready.wait(LOAD_WAIT_S)  # a worker that has just joined may still be loading it
    if plugin.loaded is None:
        raise ClusterModelError(f"the worker at {worker.address} cannot load the model: {plugin.problem}")
    with plugin.lock:  # one run at a time in a worker: it uses the process's cores through its own threads
        rows = classify_paths([Path(p) for p in paths], plugin.loaded, batch_size=batch_size)
    for row in rows:
        row.duplicate_group = None
    return rows


# ---- the client's side --------------------------------------------------------------------------------------------


def default_chunk_size(images: int, threads: int) -> int:
    return max(MIN_CHUNK, min(MAX_CHUNK, math.ceil(images / (CHUNKS_PER_THREAD * max(1, threads)))))


def _threads(client: Client) -> dict[str, int]:
    return dict(client.nthreads())


def stream_rows(
    client: Client,
    keys: Sequence[str],
    loaded: LoadedModel,
    *,
    batch_size: int = 32,
    chunk_size: int | None = None,
    engine: str = "auto",
    device: str = "auto",
    retries: int = RETRIES,
    cancel: CancelToken | None = None,
    log: LogCallback | None = None,
) -> Iterator[tuple[list[ResultRow], int]]:
    """Classify the files ``keys`` (absolute paths, as :func:`path_key` gives) on the cluster of ``client``.

    Yields ``(rows, workers)`` as tasks finish, in order of completion (exactly one row per path over the run), and
    ``([], workers)`` about once a second while waiting. Raises :class:`Cancelled` when ``cancel`` is set and
    :class:`ClusterError` when a task fails for good; either way the tasks in flight are cancelled.
    """
    log = log or (lambda _: None)
    name = register_model(client, loaded, engine=engine, device=device, log=log)
    threads = _threads(client)
    size = chunk_size or default_chunk_size(len(keys), sum(threads.values()))
    run = uuid.uuid4().hex[:8]
    starts = iter(range(0, len(keys), size))
    pending: dict[Any, list[str]] = {}  # future -> its paths: at most a window's worth
    completed = as_completed(loop=client.loop)
    asked = beat = time.monotonic()
    try:
        while True:
            check(cancel)
            if time.monotonic() - asked >= WORKERS_EVERY_S:
                before, threads, asked = len(threads), _threads(client), time.monotonic()
                if len(threads) < before:
                    log(
                        f"the cluster has {len(threads)} worker{'s' if len(threads) != 1 else ''} now, {before} "
                        "before: the images of a lost worker are classified again by the others"
                    )
            window = max(2, WINDOW_PER_THREAD * sum(threads.values()))
            while len(pending) < window and (start := next(starts, None)) is not None:
                chunk = list(keys[start : start + size])
                future = client.submit(
                    classify_chunk, name, chunk, batch_size, key=f"allgui-classify-{run}-{start}", retries=retries
                )
                pending[future] = chunk
                completed.add(future)
            if not pending:
                return
            finished = completed.next_batch(block=False)
            if not finished:
                if client.status not in ("running", "connecting", "newly-created"):
                    raise ClusterError(f"lost the connection to the scheduler (the client is {client.status})")
                time.sleep(0.05)
                if time.monotonic() - beat >= WORKERS_EVERY_S:
                    beat = time.monotonic()
                    yield [], len(threads)
                continue
            for future in finished:
                chunk = pending.pop(future)
                beat = time.monotonic()
                yield _rows_of(future, chunk), len(threads)
    finally:
        if pending:
            with contextlib.suppress(Exception):
                client.cancel(list(pending))
        completed.clear()


def _rows_of(future: Any, chunk: list[str]) -> list[ResultRow]:
    try:
        rows = future.result()
    except OSError as error:  # dask's CommClosedError is one
        raise ClusterError(f"lost the connection to the scheduler ({type(error).__name__}: {error})") from None
    except Exception as error:  # noqa: BLE001 - a task's own error, a worker killed too often
        more = f" and {len(chunk) - 1} more" if len(chunk) > 1 else ""
        raise ClusterError(
            f"the cluster could not classify {chunk[0]}{more} ({type(error).__name__}: {error})"
        ) from None
    if not all(isinstance(row, ResultRow) for row in rows) or sorted(path_key(row.path) for row in rows) != sorted(
        chunk
    ):
        raise ClusterError(f"a worker sent back rows for other images than {chunk[0]} and the rest of its task")
    return rows


def load_count(name: str | None = None) -> int:
    """How often this (worker) process loaded the model of plugin ``name`` (any model when None): run it on the
    workers with ``client.run(load_count, name)``; one each, however many tasks ran there."""
    return sum(n for plugin, n in _LOADS.items() if name is None or plugin == name)
