"""Model folders (files + ``manifest.json``) and the store that lists shipped and user models, one active.

A model folder is trusted only as far as its manifest vouches for it: every file's SHA-256 is listed and checked
on load, extra files are refused, class names must be the app's, and weights are loaded without running code
(torch ``weights_only=True``; scikit-learn pipelines through skops with an explicit trusted-types list).
Folders are written into a temporary sibling and renamed into place, so a crash never leaves half a model.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import platform
import shutil
import stat
import uuid
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from allgui import __version__
from allgui.core.classes import CLASS_NAMES
from allgui.core.models import registry
from allgui.core.models.base import Classifier, ReviewPolicy
from allgui.core.models.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    InvalidManifest,
    check_manifest,
    model_id_problem,
    protected_digest,
    read_manifest_file,
)
from allgui.core.models.onnx_graph import InvalidGraph
from allgui.core.models.run_record import RunRecord
from allgui.core.models.runtime import EngineUnavailable
from allgui.core.paths import user_data_dir
from allgui.core.statefile import (
    StateFileError,
    StateFileWarning,
    describe_os_error,
    read_state_json,
    warn_ignored,
    write_json_atomic,
)
from allgui.resources import shipped_models_dir

ACTIVE_FILE = "active_model.json"
ACTIVE_VERSION = 1
# A model file is a few megabytes; a bigger one is refused before it is hashed or loaded.
MAX_MODEL_FILE_BYTES = 512 << 20
# Operating-system litter that may appear in a copied folder and carries no model data.
IGNORED_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


class ModelLoadError(Exception):
    """A model folder that cannot be used; ``str()`` says which folder and why."""


class ManifestError(ModelLoadError):
    """manifest.json is missing, unreadable or lacks required fields."""


class ModelFilesError(ModelLoadError):
    """A file was changed, is missing, or is not listed in the manifest."""


class ModelClassesError(ModelLoadError):
    """The model's class names are not the app's four classes in their fixed order."""


class ModelWeightsError(ModelLoadError):
    """The files pass their checksums but do not form a model of the stated kind (wrong shapes, unsafe content)."""


class ModelNotFoundError(ModelLoadError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelActivationError(ModelLoadError):
    """A model that may not become the active one (e.g. the colour baseline)."""


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "allgui": __version__}
    for name in ("torch", "torchvision", "onnxruntime", "scikit-learn", "imbalanced-learn", "skops", "numpy", "pillow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_files(folder: Path) -> list[str]:
    """Every file below ``folder`` except the manifest, as sorted POSIX relative paths."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.name != MANIFEST and p.name not in IGNORED_NAMES
    )


def new_model_id(kind: str) -> str:
    return f"{kind}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def is_model_folder(folder: Path) -> bool:
    try:
        read_manifest(folder)
    except ModelLoadError:
        return False
    return True


def _replace_folder(temporary: Path, folder: Path) -> None:
    """Move a finished temporary folder to ``folder``, replacing an older one only once the new one is complete.

    Only an AllGUI model folder is ever replaced: any other folder (a typo'd ``--out ~/Documents``) is refused.
    """
    if folder.is_symlink() or folder.exists():
        if folder.is_symlink() or not folder.is_dir() or not is_model_folder(folder):
            raise ModelActivationError(f"{folder} exists and is not an AllGUI model folder; it is left as it is")
        old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
        folder.rename(old)
        temporary.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        temporary.rename(folder)


def save_model(
    classifier: Classifier,
    folder: str | Path,
    *,
    model_id: str | None = None,
    title: str | None = None,
    record: RunRecord | None = None,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    fit: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``classifier`` into ``folder`` atomically and return its manifest.

    ``record`` writes the ``training`` and ``metrics`` blocks in the current schema (:mod:`.run_record`); raw
    ``training``/``metrics`` dictionaries are written as given, for tests and tools that copy a block verbatim.
    """
    folder = Path(folder)
    if record is not None and (training or metrics):
        raise ValueError("pass either a run record or raw training/metrics blocks, not both")
    if problem := model_id_problem(model_id or folder.name):
        raise ManifestError(f"{folder}: {problem}")
    if folder.is_symlink() or (folder.exists() and not is_model_folder(folder)):
        raise ModelActivationError(f"{folder} exists and is not an AllGUI model folder; it is left as it is")
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    temporary.mkdir()
    try:
        fields = classifier.save_files(temporary) or {}
        manifest: dict[str, Any] = {k: v for k, v in fields.items() if k != "files"}
        manifest.update(
            format_version=FORMAT_VERSION,
            id=model_id or folder.name,
            kind=classifier.kind,
            title=title or classifier.title or classifier.kind,
            class_names=list(classifier.class_names),
            input_size=fields.get("input_size"),
            normalisation=fields.get("normalisation"),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            library_versions=library_versions(),
            **(
                record.manifest_fields()
                if record is not None
                else {"training": training or {}, "metrics": metrics or {}}
            ),
            fit=fit or {},
            review=classifier.review.to_dict(),
            files={name: sha256_of(temporary / name) for name in _model_files(temporary)},
            **(extra or {}),
        )
        manifest["protected_sha256"] = protected_digest(manifest)
        # Never save what loading would refuse (e.g. a review threshold out of range).
        check_manifest(manifest, needs_ood=registry.kind_info(classifier.kind).scores_unfamiliar)
        write_json_atomic(temporary / MANIFEST, manifest)
        _replace_folder(temporary, folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return manifest


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The folder's manifest, shape- and range-checked (:mod:`allgui.core.models.manifest`), or ManifestError."""
    folder = Path(folder)
    try:
        is_folder = folder.is_dir()
    except OSError as error:  # e.g. a name longer than the file system allows
        raise ModelNotFoundError(f"{folder}: {describe_os_error(error)}") from None
    if not is_folder:
        raise ModelNotFoundError(f"{folder}: not a folder")
    try:
        manifest = read_manifest_file(folder / MANIFEST)
    except StateFileError as error:
        raise ManifestError(f"{folder}: {MANIFEST} {error.reason}") from None
    if manifest is None:
        raise ManifestError(f"{folder}: no {MANIFEST}; this is not an AllGUI model folder")
    try:
        kind = manifest.get("kind") if isinstance(manifest, dict) else None
        info = registry.KINDS.get(kind) if isinstance(kind, str) else None
        return check_manifest(manifest, needs_ood=bool(info and info.scores_unfamiliar))
    except InvalidManifest as error:
        raise ManifestError(f"{folder}: {MANIFEST}: {error}") from None


def verify_folder(folder: str | Path, manifest: dict[str, Any]) -> None:
    """Raise unless the folder holds exactly the manifest's files with their recorded SHA-256 and classes."""
    folder = Path(folder)
    if list(manifest["class_names"]) != list(CLASS_NAMES):
        raise ModelClassesError(
            f"{folder}: the model's classes {manifest['class_names']} are not {list(CLASS_NAMES)} in this order"
        )
    listed = {str(name) for name in manifest["files"]}
    if not listed:
        raise ManifestError(f"{folder}: {MANIFEST} lists no files")
    present = set(_model_files(folder))
    if missing := sorted(listed - present):
        raise ModelFilesError(f"{folder}: missing file(s) {', '.join(missing)}")
    if extra := sorted(present - listed):
        raise ModelFilesError(f"{folder}: file(s) not listed in the manifest: {', '.join(extra)}")
    for name in sorted(listed):
        path = folder / name
        if path.is_symlink() or not path.resolve().is_relative_to(folder.resolve()):
            raise ModelFilesError(f"{folder}: {name} is a link; model files must be plain files")
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            raise ModelFilesError(f"{folder}: {name} is not a regular file")
        if info.st_size > MAX_MODEL_FILE_BYTES:
            raise ModelFilesError(f"{folder}: {name} is {info.st_size / 2**20:,.0f} MiB; a model file is at most 512")
        if sha256_of(path) != manifest["files"][name]:
            raise ModelFilesError(f"{folder}: {name} was changed since the model was saved (SHA-256 differs)")


@dataclass
class LoadedModel:
    classifier: Classifier
    manifest: dict[str, Any]
    folder: Path

    @property
    def id(self) -> str:
        return str(self.manifest["id"])

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def title(self) -> str:
        return str(self.manifest.get("title") or self.kind)


def load_model(folder: str | Path) -> LoadedModel:
    """Verify and load a model folder; every failure is a :class:`ModelLoadError` naming the folder."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    verify_folder(folder, manifest)
    try:
        cls = registry.classifier_class(str(manifest["kind"]))
    except registry.UnknownKindError as error:
        raise ManifestError(f"{folder}: {error}") from None
    try:
        classifier = cls.load_files(folder, manifest)
    except ModelLoadError:
        raise
    except (InvalidManifest, StateFileError) as error:
        raise ManifestError(f"{folder}: {error}") from None
    except (EngineUnavailable, InvalidGraph) as error:
        raise ModelWeightsError(f"{folder}: {error}") from None
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, i.e. running the file's code: never show that advice.
        raise ModelWeightsError(
            f"{folder}: a weights file holds objects other than plain tensors (it may contain code); refused"
        ) from None
    except Exception as error:  # noqa: BLE001 - torch/skops/json failures all mean "not a usable model"
        raise ModelWeightsError(
            f"{folder}: the files do not form a usable {manifest['kind']} model ({type(error).__name__}: {error})"
        ) from None
    classifier.review = ReviewPolicy.from_dict(manifest.get("review"))
    return LoadedModel(classifier, manifest, folder)


@dataclass
class ModelInfo:
    id: str
    kind: str
    title: str
    folder: Path
    source: str  # "shipped" or "user"
    created: str
    offered: bool
    manifest: dict[str, Any]


class ModelStore:
    """Shipped models (read-only, in the resources) and the user's models, with one active model."""

    def __init__(self, data_dir: Path | None = None, shipped_dir: Path | None = None) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else user_data_dir()
        self.shipped_dir = Path(shipped_dir) if shipped_dir is not None else shipped_models_dir()
        # A choice that could not be written (read-only data folder): kept for this session, with the reason.
        self._unsaved_choice: str | None = None
        self.unsaved_reason: str | None = None

    @property
    def user_dir(self) -> Path:
        return self.data_dir / "models"

    def _scan(self, root: Path, source: str) -> list[ModelInfo]:
        found: list[ModelInfo] = []
        if not root.is_dir():
            return found
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                manifest = read_manifest(folder)
            except ModelLoadError as error:
                # Not a model: listed for nobody, so one bad folder never stops the list or a classification.
                warnings.warn(StateFileWarning(f"{error}; this folder is not listed as a model"), stacklevel=2)
                continue
            if manifest["id"] != folder.name and source == "user":
                warnings.warn(
                    StateFileWarning(f"{folder}: its manifest names the model {manifest['id']!r}; not listed"),
                    stacklevel=2,
                )
                continue
            kind = str(manifest["kind"])
            offered = registry.KINDS[kind].offered if kind in registry.KINDS else False
            found.append(
                ModelInfo(
                    str(manifest["id"]),
                    kind,
                    str(manifest.get("title") or kind),
                    folder,
                    source,
                    str(manifest.get("created", "")),
                    offered,
                    manifest,
                )
            )
        return found

    def list(self) -> list[ModelInfo]:
        """Shipped models first, then the user's, each by creation time; a user model never hides a shipped id."""
        shipped = self._scan(self.shipped_dir, "shipped")
        ids = {m.id for m in shipped}
        user = [m for m in self._scan(self.user_dir, "user") if m.id not in ids]
        return sorted(shipped, key=lambda m: m.created) + sorted(user, key=lambda m: m.created)

    def find(self, model_id: str) -> ModelInfo:
        for info in self.list():
            if info.id == model_id:
                return info
        if model_id_problem(model_id) is None:  # a folder of that name that is not listed: say why
            for root in (self.shipped_dir, self.user_dir):
                if (root / model_id).is_dir():
                    read_manifest(root / model_id)
        known = ", ".join(m.id for m in self.list()) or "none"
        raise ModelNotFoundError(f"no model with id {model_id!r} (known: {known})")

    def resolve(self, id_or_folder: str | Path) -> Path:
        """A model id from the list, or a path to a model folder."""
        text = str(id_or_folder)
        try:
            return self.find(text).folder
        except ModelNotFoundError:
            path = Path(text).expanduser()
            if path.is_dir():
                return path
            raise

    def load(self, id_or_folder: str | Path | None = None) -> LoadedModel:
        """Load by id or folder, or the active model when None."""
        if id_or_folder is None:
            active = self.active_id()
            if active is None:
                raise ModelNotFoundError(
                    "no model is available: train one (allgui train) or import one (allgui models import)"
                )
            id_or_folder = active
        return load_model(self.resolve(id_or_folder))

    # ---- active model --------------------------------------------------------------------------------------------
    @property
    def active_file(self) -> Path:
        return self.data_dir / ACTIVE_FILE

    def _stored_active(self) -> str | None:
        if self._unsaved_choice is not None:
            return self._unsaved_choice
        try:
            data = read_state_json(self.active_file)
        except StateFileError as error:
            warn_ignored(error, "the shipped default model is used")
            return None
        if data is None:
            return None
        if not isinstance(data, dict) or data.get("version") != ACTIVE_VERSION:
            warn_ignored(StateFileError(self.active_file, "is not an active-model choice"), "the default is used")
            return None
        value = data.get("active_model")
        return value if isinstance(value, str) else None

    def active_id(self) -> str | None:
        """The chosen model if it still exists; else the shipped default (an SE-CNN first), else any offered one."""
        models = self.list()
        stored = self._stored_active()
        if stored and any(m.id == stored for m in models):
            return stored
        offered = [m for m in models if m.offered]
        for candidates in (
            [m for m in offered if m.source == "shipped" and m.manifest.get("default")],
            [m for m in offered if m.source == "shipped" and m.kind == "secnn"],
            [m for m in offered if m.source == "shipped"],
            offered,
        ):
            if candidates:
                return candidates[0].id
        return None

    def activate(self, model_id: str) -> LoadedModel:
        """Make ``model_id`` active only after it loads cleanly; on any error the previous choice stays.

        When the data folder cannot be written the choice is kept for this session only and
        :attr:`unsaved_reason` says why (the GUI tells the user; the CLI refuses).
        """
        info = self.find(model_id)
        if not info.offered:
            raise ModelActivationError(
                f"{model_id} is a {info.kind} model, which is kept for comparison only and cannot be made active"
            )
        loaded = load_model(info.folder)
        try:
            write_json_atomic(self.active_file, {"version": ACTIVE_VERSION, "active_model": info.id})
        except (OSError, StateFileError) as error:
            reason = error.reason if isinstance(error, StateFileError) else describe_os_error(error)
            self._unsaved_choice = info.id
            self.unsaved_reason = f"the model choice cannot be saved in {self.active_file} ({reason})"
            return loaded
        self._unsaved_choice = None
        self.unsaved_reason = None
        return loaded

    # ---- adding models -------------------------------------------------------------------------------------------
    def save(self, classifier: Classifier, model_id: str | None = None, **fields: Any) -> ModelInfo:
        model_id = model_id or new_model_id(classifier.kind)
        save_model(classifier, self._user_folder(model_id), model_id=model_id, **fields)
        return self.find(model_id)

    def _user_folder(self, model_id: str) -> Path:
        """``models/<id>``, checked to be a direct child of the models folder before anything is written or moved."""
        if problem := model_id_problem(model_id):
            raise ManifestError(problem)
        root = Path(os.path.realpath(self.user_dir))
        target = self.user_dir / model_id
        if Path(os.path.realpath(target)).parent != root:
            raise ManifestError(f"model id {model_id!r} would leave the models folder {self.user_dir}; refused")
        return target

    def import_folder(self, source: str | Path) -> ModelInfo:
        """Verify a model folder, then copy it into the user's models (atomically) under its own id."""
        source = Path(source)
        loaded = load_model(source)
        if any(m.id == loaded.id for m in self.list()):
            raise ModelActivationError(f"a model with id {loaded.id!r} is already in the list")
        target = self._user_folder(loaded.id)
        if target.is_symlink() or target.exists():
            raise ModelActivationError(f"{target} already exists (not a listed model); it is left as it is")
        temporary = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            temporary.mkdir(parents=True)
            for name in [*loaded.manifest["files"], MANIFEST]:
                (temporary / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, temporary / name)
            verify_folder(temporary, read_manifest(temporary))  # the copy is what will be used: check it too
            _replace_folder(temporary, target)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        return self.find(loaded.id)
