"""The model the window works with: listed from the store, loaded and activated off the GUI thread."""

from __future__ import annotations

import gc
import warnings
from typing import Any

from PySide6.QtCore import QObject, Signal

from allgui.core.models import registry, runtime
from allgui.core.models.store import LoadedModel, ModelInfo, ModelStore
from allgui.ui.workers import Task, TaskRunner

CPU_NOTE = "Runs on the CPU (no CUDA GPU found): slower, same results"

Loaded = tuple[LoadedModel, list[str], str]  # the model, warnings to show, the plain device note ("" for none)


def _load(task: Task, store: ModelStore, model_id: str | None, engine: str = "auto") -> Loaded:
    """Load (and activate) a model, collecting warnings (a failing GPU, ignored state files) and the device note.

    No garbage collection while torch, scikit-learn and the model come in: each full collection scans the growing
    heap with the GIL held, whatever thread it runs on, and froze the window for 60-220 ms, five to seven times per
    start-up. Once loaded, everything (torch, the model, the window) is frozen out of later collections, which would
    otherwise scan it again whenever a long job allocates (the stall as a training started), and collecting resumes.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _load_quietly(task, store, model_id, engine)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def _load_quietly(task: Task, store: ModelStore, model_id: str | None, engine: str) -> Loaded:
    if runtime.gpu_present() and runtime.torch_installed():  # only then does a network run on torch by default
        from allgui.ui.preload import preload_torch_libraries

        preload_torch_libraries()  # a no-op once torch is in
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task.progress(0, 0, "loading model…")
        if model_id is None:
            loaded = store.load()
        else:
            info = store.find(model_id)
            loaded = store.activate(model_id) if info.offered else store.load(model_id)
        # Settings carried over from an installation with torch to one without (the laboratory bundle).
        fallback = engine == "torch" and not runtime.torch_installed()
        loaded.classifier.set_engine("auto" if fallback else engine)
        device = loaded.classifier.device_name  # chooses the engine (and torch's device) inside the warning catcher
    # Device changes, and state files ignored on the way (a damaged active-model choice, a folder that is not a model).
    notices = [str(w.message) for w in caught if type(w.message).__name__ in ("DeviceWarning", "StateFileWarning")]
    if fallback:
        notices.append("The torch engine chosen in Preferences is not installed here: ONNX Runtime runs the model.")
    if store.unsaved_reason:
        notices.append(f"{store.unsaved_reason}: the choice lasts until AllGUI closes.")
    # No GPU is the normal case on a lab PC, not a fault: a plain note, not a warning.
    note = ""
    if registry.KINDS.get(loaded.kind, None) and registry.KINDS[loaded.kind].has_network and device == "CPU":
        note = CPU_NOTE
    return loaded, notices, note


def _probe_device(task: Task) -> str:
    """Where a network runs by default: "CPU" (ONNX Runtime) unless a GPU driver is there and torch with it, which
    is then imported here, off the start-up path, to name the GPU."""
    if not (runtime.gpu_present() and runtime.torch_installed()):
        return "CPU"
    from allgui.ui.preload import preload_torch_libraries

    preload_torch_libraries()
    from allgui.core.models.torch_device import choose_device, device_label

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return device_label(choose_device("auto"))


class ModelController(QObject):
    listed = Signal(list)  # list[ModelInfo] offered to technicians
    loading = Signal(str)  # model id
    loaded = Signal(object)  # LoadedModel
    failed = Signal(str)
    notice = Signal(str)  # a warning the technician must see (a failing GPU, a choice that cannot be saved)
    device_note = Signal(str)  # where the current model runs, when that is worth a plain word ("" clears it)
    devices_known = Signal()

    def __init__(self, runner: TaskRunner, store: ModelStore | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.store = store or ModelStore()
        self.models: list[ModelInfo] = []
        self.current: LoadedModel | None = None
        self.network_device: str | None = None  # where networks run by default, once probed
        self.engine = "auto"  # the Preferences' engine, set on each model as it loads

    def refresh(self) -> list[ModelInfo]:
        self.models = [m for m in self.store.list() if m.offered]
        self.listed.emit(self.models)
        return self.models

    def device_of(self, info: ModelInfo) -> str:
        """Where a listed model would run: classical models on the CPU; networks on a GPU where torch finds one."""
        kind = registry.KINDS.get(info.kind)
        if kind is None or not kind.has_network:
            return "CPU"
        if self.current is not None and self.current.id == info.id:
            return self.current.classifier.device_name
        return self.network_device or "GPU if available"

    def probe_devices(self) -> None:
        self.runner.start("devices", _probe_device, on_result=self._devices_probed, background=True)

    def _devices_probed(self, label: str) -> None:
        self.network_device = label
        self.devices_known.emit()

    def load(self, model_id: str | None = None) -> None:
        """Load ``model_id`` (None: the store's active model); the current model stays until the new one is ready."""
        self.loading.emit(model_id or "")
        self.runner.start(
            "model",
            _load,
            self.store,
            model_id,
            self.engine,
            on_result=self._loaded,
            on_error=self._failed,
            background=True,
        )

    def _loaded(self, result: Loaded) -> None:
        loaded, notices, note = result
        self.current = loaded
        self.loaded.emit(loaded)
        self.device_note.emit(note)
        for line in notices:
            self.notice.emit(line)

    def _failed(self, message: str) -> None:
        self.failed.emit(message)

    def describe(self, info: ModelInfo) -> str:
        source = "" if info.source == "shipped" else " (yours)"
        return f"{info.title}{source} — {info.id} — {self.device_of(info)}"

    @property
    def classifier(self) -> Any:
        return None if self.current is None else self.current.classifier
