"""Saving and loading scikit-learn pipelines with ``skops.io`` against an explicit list of trusted types.

A model folder may come from anywhere (``allgui models import``), so a pipeline file is never unpickled: skops
rebuilds only the types listed here (plus the plain scikit-learn/numpy types it trusts by default) and refuses
anything else before constructing a single object.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any

# Importing skops.io lists scikit-learn's estimators, a walk that imports every package under sklearn, its array-API
# adapter for torch included: that is all of torch where it is installed (2 s at start-up, for models that never use
# it). The walk skips a package that fails to import (and the listing ignores "externals" anyway), so that one
# package is held back while skops.io is imported.
_ARRAY_API_TORCH = "sklearn.externals.array_api_compat.torch"
_held_back = _ARRAY_API_TORCH not in sys.modules
if _held_back:
    sys.modules[_ARRAY_API_TORCH] = None  # type: ignore[assignment]
try:
    import skops.io as sio
finally:
    if _held_back and sys.modules.get(_ARRAY_API_TORCH, 0) is None:
        del sys.modules[_ARRAY_API_TORCH]

# Types our own pipelines contain beyond skops' defaults; nothing outside this list is ever loaded.
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "imblearn.pipeline.Pipeline",
        "imblearn.over_sampling._smote.base.SMOTE",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.tree._tree.Tree",
    }
)


class UntrustedPipelineError(ValueError):
    """A pipeline file that is not a skops archive or that names a type outside :data:`TRUSTED_TYPES`."""


def dump_pipeline(pipeline: Any, path: Path) -> None:
    # Deflate: forests and support vectors shrink two- to three-fold, which keeps the shipped models small.
    sio.dump(pipeline, path, compression=zipfile.ZIP_DEFLATED)


def canonical(pipeline: Any) -> Any:
    """The pipeline as loading it back would give it (same array layouts), so that saved and in-memory models
    give bit-identical probabilities (a transposed PCA matrix changes float32 rounding otherwise)."""
    data = sio.dumps(pipeline)
    return sio.loads(data, trusted=sorted(set(sio.get_untrusted_types(data=data)) & TRUSTED_TYPES))


def load_pipeline(path: Path) -> Any:
    if not zipfile.is_zipfile(path):
        raise UntrustedPipelineError(f"{path.name} is not a skops archive (refusing to unpickle it)")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as error:  # noqa: BLE001 - any parse failure means the file is not ours
        raise UntrustedPipelineError(f"{path.name} cannot be read as a skops archive ({error})") from None
    unexpected = sorted(set(untrusted) - TRUSTED_TYPES)
    if unexpected:
        raise UntrustedPipelineError(f"{path.name} contains types AllGUI does not trust: {', '.join(unexpected)}")
    return sio.load(path, trusted=sorted(untrusted))
