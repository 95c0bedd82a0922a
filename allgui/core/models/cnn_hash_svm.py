"""The study's "SVM with hashing": SE-CNN penultimate features -> compact binary hash code -> SVM.

The hash is PCA hashing: features are standardised, projected on their top ``n_bits`` principal axes and
binarised by sign, so each image becomes an ``n_bits``-bit code (8 bytes at 64 bits). The SVM classifies the codes.
A small SE-CNN is trained inside :meth:`fit` on the same training images and saved with the model in ``cnn/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from imblearn.pipeline import Pipeline
from PIL import Image
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.preprocessing import Binarizer, StandardScaler
from sklearn.svm import SVC

from allgui.core.classes import CLASS_NAMES
from allgui.core.models.base import Classifier
from allgui.core.models.classical import OPTION_BOUNDS, full_probabilities
from allgui.core.models.manifest import check_options
from allgui.core.models.skops_io import canonical, dump_pipeline, load_pipeline
from allgui.core.progress import CancelToken, LogCallback, ProgressCallback, check

CNN_FOLDER = "cnn"
PIPELINE_FILE = "hash_svm.skops"
CHUNK = 128  # images decoded at a time when extracting features


class CNNHashSVMClassifier(Classifier):
    kind = "cnn-hash-svm"
    title = "SE-CNN features + hash code + SVM"
    defaults: ClassVar[dict[str, Any]] = {
        "cnn": {"image_size": 64, "width": 12, "epochs": 12, "patience": 5},
        "n_bits": 64,
        "C": [1.0, 10.0],
        "cv_folds": 3,
        "seed": 0,
        "device": "auto",
    }

    cnn: Any = None  # its SECNNClassifier (set before Classifier.__init__ clears the device notice)
    _notice: str | None = None

    def __init__(self, **options: Any) -> None:
        merged = {**self.defaults, **options}
        merged["cnn"] = {**self.defaults["cnn"], **options.get("cnn", {})}
        super().__init__(**merged)
        self.pipeline: Any = None

    def _new_cnn(self) -> Any:
        from allgui.core.models.secnn import SECNNClassifier

        options = {"seed": self.options["seed"], "device": self.options["device"], **self.options["cnn"]}
        return SECNNClassifier(**options)

    def set_device(self, preference: str, log: LogCallback | None = None) -> None:
        self.options["device"] = preference
        if self.cnn is not None:
            self.cnn.set_device(preference, log)

    @property
    def device_notice(self) -> str | None:  # type: ignore[override]
        """Its CNN's notice (a GPU that failed): the GUI reads and clears it on the model it classifies with."""
        return self.cnn.device_notice if self.cnn is not None else self._notice

    @device_notice.setter
    def device_notice(self, value: str | None) -> None:
        if self.cnn is not None:
            self.cnn.device_notice = value
        self._notice = value

    def set_engine(self, engine: str) -> None:
        if self.cnn is not None:
            self.cnn.set_engine(engine)

    @property
    def device_name(self) -> str:
        return self.cnn.device_name if self.cnn is not None else "CPU"

    @property
    def engine_name(self) -> str:
        return f"{self.cnn.engine_name} + scikit-learn" if self.cnn is not None else "scikit-learn"

    @property
    def decode_draft(self) -> tuple[int, int] | None:
        return self.cnn.decode_draft if self.cnn is not None else None  # files are read as its CNN reads them

    def _features_of_paths(self, paths: Sequence[Path], cancel: CancelToken | None) -> np.ndarray:
        parts = []
        for start in range(0, len(paths), CHUNK):
            check(cancel)
            parts.append(self.cnn.features([self.cnn.read(p) for p in paths[start : start + CHUNK]]))
        return np.concatenate(parts)

    def fit(
        self,
        paths: Sequence[Path],
        labels: np.ndarray,
        *,
        groups: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        log: LogCallback | None = None,
    ) -> dict[str, Any]:
        log = log or (lambda _: None)
        labels = np.asarray(labels, dtype=int)
        groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
        self.cnn = self._new_cnn()
        log("cnn-hash-svm: training the feature SE-CNN")
        cnn_summary = self.cnn.fit(paths, labels, groups=groups, progress=progress, cancel=cancel, log=log)
        if progress is not None:
            progress(1, 1, "extracting SE-CNN features")
        features = self._features_of_paths(paths, cancel)
        seed = int(self.options["seed"])
        bits = max(2, min(int(self.options["n_bits"]), features.shape[1], len(labels) // 2))
        pipeline = Pipeline(
            [
                ("scale", StandardScaler()),
                ("project", PCA(n_components=bits, random_state=seed)),
                ("hash", Binarizer(threshold=0.0)),  # sign of each projection: one bit
                ("svc", CalibratedClassifierCV(SVC(random_state=seed), ensemble=False)),
            ]
        )
        folds = int(self.options["cv_folds"])
        search = GridSearchCV(
            pipeline,
            {"svc__estimator__C": list(self.options["C"])},
            scoring="f1_macro",
            cv=StratifiedGroupKFold(folds, shuffle=True, random_state=seed),
            n_jobs=1,
        )
        check(cancel)
        search.fit(features, labels, groups=groups)
        self.pipeline = canonical(search.best_estimator_)
        log(f"cnn-hash-svm: {bits}-bit codes, best {search.best_params_} (cv macro F1 {search.best_score_:.3f})")
        return {
            "n_bits": bits,
            "best_params": search.best_params_,
            "cv_f1_macro": float(search.best_score_),
            "cnn": {k: cnn_summary.get(k) for k in ("best_epoch", "epochs_run", "val_accuracy", "fit_seconds")},
        }

    def hash_codes(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Packed binary codes, (n, n_bits / 8) uint8."""
        features = self.cnn.features(images)
        scaled = self.pipeline.named_steps["scale"].transform(features)
        codes = self.pipeline.named_steps["hash"].transform(self.pipeline.named_steps["project"].transform(scaled))
        return np.packbits(codes.astype(np.uint8), axis=1)

    def reduce(self, image: Image.Image) -> Image.Image:
        return self.cnn.reduce(image) if self.cnn is not None else image

    def predict_proba(self, images: Sequence[Image.Image]) -> np.ndarray:
        if self.cnn is None or self.pipeline is None:
            raise RuntimeError("cnn-hash-svm model is not fitted")
        if not images:
            return np.zeros((0, len(CLASS_NAMES)))
        return full_probabilities(self.pipeline, self.cnn.features(images))

    def save_files(self, folder: Path) -> dict[str, Any]:
        if self.cnn is None or self.pipeline is None:
            raise RuntimeError("only a trained cnn-hash-svm model can be saved")
        cnn_fields = self.cnn.save_files(folder / CNN_FOLDER)
        dump_pipeline(self.pipeline, folder / PIPELINE_FILE)
        return {
            "input_size": cnn_fields.get("input_size"),
            "normalisation": cnn_fields.get("normalisation"),
            "options": self.options,
            "n_bits": int(self.pipeline.named_steps["project"].n_components_),
        }

    @classmethod
    def load_files(cls, folder: Path, manifest: dict[str, Any]) -> Classifier:
        from allgui.core.models.secnn import SECNNClassifier

        check_options(manifest.get("options", {}), OPTION_BOUNDS, "options")
        model = cls(**manifest.get("options", {}))
        prefix = f"{CNN_FOLDER}/"
        files = {
            name.removeprefix(prefix): d for name, d in manifest.get("files", {}).items() if name.startswith(prefix)
        }
        model.cnn = SECNNClassifier.load_files(folder / CNN_FOLDER, {"files": files})
        model.pipeline = load_pipeline(folder / PIPELINE_FILE)
        expected = model.cnn.config.channels[-1]
        if model.pipeline.n_features_in_ != expected:
            found = model.pipeline.n_features_in_
            raise ValueError(f"hash pipeline expects {found} features, the CNN gives {expected}")
        return model
