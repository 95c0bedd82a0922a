"""The study's classical pipelines on pixels (SVM, Random Forest) and the colour-only shortcut detector.

Each is one scikit-learn/imbalanced-learn pipeline over image features, saved with ``skops.io`` (never pickled).
SMOTE always sits inside an ``imblearn.pipeline.Pipeline`` so that it only ever resamples the rows a pipeline is
fitted on: inside ``GridSearchCV`` those are the training folds, never a validation fold.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline
from PIL import Image
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from allgui.core.classes import CLASS_NAMES
from allgui.core.models.base import Classifier
from allgui.core.models.features import (
    color_features,
    dihedral_augment,
    images_to_arrays,
    load_arrays,
    pixel_features,
)
from allgui.core.models.manifest import check_options
from allgui.core.models.skops_io import canonical, dump_pipeline, load_pipeline
from allgui.core.progress import CancelToken, LogCallback, ProgressCallback, check

# Sizes a manifest may ask for: a crafted image size would otherwise take loading past the machine's memory.
OPTION_BOUNDS: dict[str, tuple[float, float]] = {
    "image_size": (8, 256),
    "pca_components": (1, 4096),
    "n_estimators": (1, 5000),
    "augment_copies": (0, 16),
    "cv_folds": (2, 20),
    "n_bits": (8, 4096),
}


def smote_neighbours(labels: np.ndarray, wanted: int = 5) -> int:
    """SMOTE needs k < the smallest class's size; shrink k on small training sets instead of failing."""
    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min()) if counts.any() else 1
    return max(1, min(wanted, smallest - 1))


def full_probabilities(estimator: Any, features: np.ndarray) -> np.ndarray:
    """predict_proba widened to all four classes (a class absent from training gets probability 0)."""
    partial = estimator.predict_proba(features)
    result = np.zeros((len(features), len(CLASS_NAMES)), dtype=np.float64)
    result[:, np.asarray(estimator.classes_, dtype=int)] = partial
    return result


class SklearnImageClassifier(Classifier):
    """Images -> features -> one pipeline; subclasses choose the features and the pipeline."""

    file_name: ClassVar[str] = "pipeline.skops"
    defaults: ClassVar[dict[str, Any]] = {}
    normalisation: ClassVar[str] = "RGB resized bilinear to image_size, pixels scaled to [0, 1]"

    def __init__(self, **options: Any) -> None:
        super().__init__(**{**self.defaults, **options})
        self.pipeline: Any = None

    @property
    def image_size(self) -> int:
        return int(self.options["image_size"])

    def reduce(self, image: Image.Image) -> Image.Image:
        """The image at the pipeline's input size, as :func:`image_array` resizes it."""
        image = image if image.mode == "RGB" else image.convert("RGB")
        size = self.image_size
        return image if image.size == (size, size) else image.resize((size, size), Image.BILINEAR)

    @abstractmethod
    def features(self, arrays: np.ndarray) -> np.ndarray:
        """Feature rows for a (n, size, size, 3) uint8 stack."""

    @abstractmethod
    def fit_arrays(
        self,
        arrays: np.ndarray,
        labels: np.ndarray,
        groups: np.ndarray | None,
        log: LogCallback,
        cancel: CancelToken | None = None,
    ) -> dict[str, Any]:
        """Fit ``self.pipeline`` on decoded training images; return the fit summary.

        Long fits check ``cancel`` between their steps (grid-search folds, chunks of trees), so a cancel stops a
        training within a step of a second or two rather than at the end of the fit.
        """

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
        arrays = load_arrays(paths, self.image_size, progress, cancel)
        check(cancel)
        if progress is not None:
            progress(len(paths), len(paths), f"fitting {self.kind}")
        summary = self.fit_arrays(arrays, np.asarray(labels, dtype=int), groups, log or (lambda _: None), cancel)
        self.pipeline = canonical(self.pipeline)
        check(cancel)
        return summary

    def predict_proba(self, images: Sequence[Image.Image]) -> np.ndarray:
        if self.pipeline is None:
            raise RuntimeError(f"{self.kind} model is not fitted")
        if not images:
            return np.zeros((0, len(CLASS_NAMES)))
        return full_probabilities(self.pipeline, self.features(images_to_arrays(images, self.image_size)))

    def save_files(self, folder: Path) -> dict[str, Any]:
        if self.pipeline is None:  # e.g. training cancelled before the fit: never store an empty model
            raise RuntimeError(f"only a trained {self.kind} model can be saved")
        dump_pipeline(self.pipeline, folder / self.file_name)
        return {
            "input_size": [self.image_size, self.image_size],
            "normalisation": self.normalisation,
            "options": self.options,
        }

    @classmethod
    def load_files(cls, folder: Path, manifest: dict[str, Any]) -> Classifier:
        check_options(manifest.get("options", {}), OPTION_BOUNDS, "options")
        model = cls(**manifest.get("options", {}))
        model.pipeline = load_pipeline(folder / cls.file_name)
        expected = model.features(np.zeros((1, model.image_size, model.image_size, 3), np.uint8)).shape[1]
        found = getattr(model.pipeline, "n_features_in_", expected)
        if found != expected:
            raise ValueError(f"pipeline expects {found} features, but image_size gives {expected}")
        if not set(np.asarray(model.pipeline.classes_, dtype=int)) <= set(range(len(CLASS_NAMES))):
            raise ValueError(f"pipeline classes {list(model.pipeline.classes_)} are not class indices 0-3")
        return model


class SVMClassifier(SklearnImageClassifier):
    kind = "svm"
    title = "SVM (PCA + SMOTE + grid search)"
    defaults: ClassVar[dict[str, Any]] = {
        "image_size": 32,
        "pca_components": 64,
        "C": [1.0, 10.0, 100.0],
        "gamma": ["scale"],
        "cv_folds": 3,
        "seed": 0,
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.last_search: GridSearchCV | None = None

    def features(self, arrays: np.ndarray) -> np.ndarray:
        return pixel_features(arrays)

    def make_search(
        self, labels: np.ndarray, n_features: int, grouped: bool, cancel: CancelToken | None = None
    ) -> GridSearchCV:
        seed = int(self.options["seed"])
        folds = int(self.options["cv_folds"])
        fold_size = len(labels) - int(np.ceil(len(labels) / folds))  # smallest training fold, roughly
        components = max(2, min(int(self.options["pca_components"]), fold_size - 1, n_features))
        fold_labels = np.bincount(labels) * (folds - 1) // folds
        pipeline = Pipeline(
            [
                ("scale", StandardScaler()),
                ("pca", PCA(n_components=components, random_state=seed)),
                ("smote", SMOTE(k_neighbors=smote_neighbours(fold_labels), random_state=seed)),
                # Platt-scaled SVC (what SVC(probability=True) did, deprecated in scikit-learn 1.9).
                ("svc", CalibratedClassifierCV(SVC(random_state=seed), ensemble=False)),
            ]
        )
        splitter = (StratifiedGroupKFold if grouped else StratifiedKFold)(folds, shuffle=True, random_state=seed)
        grid = {
            "svc__estimator__C": list(self.options["C"]),
            "svc__estimator__gamma": list(self.options["gamma"]),
        }
        f1_macro = get_scorer("f1_macro")

        def score(estimator: Any, features: np.ndarray, labels: np.ndarray) -> float:
            check(cancel)  # runs after every fold's fit: the grid search's cancel point
            return f1_macro(estimator, features, labels)

        # error_score="raise" lets Cancelled out of the search instead of scoring the fold as failed.
        return GridSearchCV(pipeline, grid, scoring=score, cv=splitter, refit=True, n_jobs=1, error_score="raise")

    def fit_arrays(
        self,
        arrays: np.ndarray,
        labels: np.ndarray,
        groups: np.ndarray | None,
        log: LogCallback,
        cancel: CancelToken | None = None,
    ) -> dict[str, Any]:
        features = self.features(arrays)
        search = self.make_search(labels, features.shape[1], groups is not None, cancel)
        log(f"svm: grid search over {search.param_grid} with {search.cv.get_n_splits()} grouped folds")
        search.fit(features, labels, groups=groups)
        self.last_search = search
        self.pipeline = search.best_estimator_
        log(f"svm: best {search.best_params_} (cv macro F1 {search.best_score_:.3f})")
        return {"best_params": search.best_params_, "cv_f1_macro": float(search.best_score_)}


class RFClassifier(SklearnImageClassifier):
    kind = "rf"
    title = "Random Forest (augmentation + PCA + SMOTE)"
    defaults: ClassVar[dict[str, Any]] = {
        "image_size": 32,
        "augment_copies": 3,
        "pca_components": 64,
        "n_estimators": 200,
        "min_samples_leaf": 2,
        "seed": 0,
    }

    def features(self, arrays: np.ndarray) -> np.ndarray:
        return pixel_features(arrays)

    def fit_arrays(
        self,
        arrays: np.ndarray,
        labels: np.ndarray,
        groups: np.ndarray | None,
        log: LogCallback,
        cancel: CancelToken | None = None,
    ) -> dict[str, Any]:
        seed = int(self.options["seed"])
        # Augment the training images only; the held-out images are never seen here.
        augmented, augmented_labels = dihedral_augment(arrays, labels, int(self.options["augment_copies"]))
        features = self.features(augmented)
        components = max(2, min(int(self.options["pca_components"]), len(features) - 1, features.shape[1]))
        log(f"rf: {len(arrays)} training images -> {len(augmented)} with flips/rotations")
        # The pipeline's steps are fitted one by one (as Pipeline.fit would) so that the forest can grow in chunks
        # of trees with a cancel check between them; warm_start gives the same trees as one fit.
        pca = PCA(n_components=components, random_state=seed)
        smote = SMOTE(k_neighbors=smote_neighbours(augmented_labels), random_state=seed)
        reduced = pca.fit_transform(features)
        check(cancel)
        resampled, resampled_labels = smote.fit_resample(reduced, augmented_labels)
        total = int(self.options["n_estimators"])
        forest = RandomForestClassifier(
            n_estimators=0,
            min_samples_leaf=int(self.options["min_samples_leaf"]),
            random_state=seed,
            n_jobs=2,
            warm_start=True,
        )
        while forest.n_estimators < total:
            check(cancel)
            forest.n_estimators = min(total, forest.n_estimators + 20)
            forest.fit(resampled, resampled_labels)
        forest.set_params(n_jobs=1, warm_start=False)  # saved models predict single-threaded unless told otherwise
        self.pipeline = Pipeline([("pca", pca), ("smote", smote), ("rf", forest)])
        return {"training_rows_after_augmentation": int(len(augmented)), "pca_components": components}


class ColorBaselineClassifier(SklearnImageClassifier):
    """Colour statistics only: if this scores well, the data set lets a model classify by stain, not by cells."""

    kind = "color-baseline"
    title = "Colour-only baseline (shortcut detector)"
    normalisation = "RGB resized bilinear to image_size; channel means/stds and a 4x4x4 colour histogram"
    defaults: ClassVar[dict[str, Any]] = {"image_size": 96, "C": 1.0}

    def features(self, arrays: np.ndarray) -> np.ndarray:
        return color_features(arrays)

    def fit_arrays(
        self,
        arrays: np.ndarray,
        labels: np.ndarray,
        groups: np.ndarray | None,
        log: LogCallback,
        cancel: CancelToken | None = None,
    ) -> dict[str, Any]:
        self.pipeline = Pipeline(
            [
                ("scale", StandardScaler()),
                ("logreg", LogisticRegression(C=float(self.options["C"]), max_iter=5000, class_weight="balanced")),
            ]
        )
        self.pipeline.fit(self.features(arrays), labels)
        return {"features": "channel means/stds + 4x4x4 colour histogram"}
