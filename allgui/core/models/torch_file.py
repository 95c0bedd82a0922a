"""Reading the tensor names and shapes of a torch weights file (``torch.save`` of a state dict) without torch.

The ONNX engine never reads ``weights.pt``; torch reads it only when it runs or trains the network. A file that
would run code, or whose tensors do not fit the network, must still be refused when the model is loaded, not found
out later (or never). So the archive's pickle is read here by an unpickler that knows only the few objects a state
dict is made of, as torch's own ``weights_only`` loader allows them, and builds stand-ins that record each
tensor's shape instead of reading its data. Anything else (``os.system``, a class of another package) is refused.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from typing import Any

MAX_PICKLE_BYTES = 16 << 20


class _Storage:
    """Stands in for a torch storage class (``torch.FloatStorage`` and the like)."""


def _rebuild_tensor(storage: object, offset: int, size: tuple[int, ...], *args: object) -> tuple[int, ...]:
    del storage, offset, args
    if not isinstance(size, tuple) or not all(isinstance(d, int) and d >= 0 for d in size):
        raise pickle.UnpicklingError("a tensor with a malformed shape")
    return size


def _rebuild_parameter(shape: tuple[int, ...], *args: object) -> tuple[int, ...]:
    del args
    return shape


class _ShapesUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name.endswith("Storage"):
            return _Storage
        raise pickle.UnpicklingError(f"refers to {module}.{name}")

    def persistent_load(self, pid: object) -> object:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError("an unknown persistent reference")
        return _Storage()


def tensor_shapes(data: bytes) -> dict[str, tuple[int, ...]]:
    """Each tensor's name and shape in a ``torch.save`` archive of a state dict; ``pickle.UnpicklingError`` for
    anything that is not one (a plain pickle, code, other objects)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
        if len(names) != 1:
            raise pickle.UnpicklingError("not a torch weights archive")
        info = archive.getinfo(names[0])
        if info.file_size > MAX_PICKLE_BYTES:
            raise pickle.UnpicklingError("the weights archive's index is implausibly large")
        index = archive.read(info)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise pickle.UnpicklingError(f"not a torch weights archive ({error})") from None
    try:
        state = _ShapesUnpickler(io.BytesIO(index)).load()
    except pickle.UnpicklingError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of a hostile stream means "not a state dict"
        raise pickle.UnpicklingError(f"not a state dict ({type(error).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, tuple) for k, v in state.items()):
        raise pickle.UnpicklingError("does not hold named tensors only")
    return dict(state)


def check_state(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> None:
    """Raise ValueError, in the words torch's ``load_state_dict`` uses, unless the shapes are the expected ones."""
    if missing := sorted(set(expected) - set(found)):
        raise ValueError(f"missing key(s) in the weights: {', '.join(missing[:5])}")
    if unexpected := sorted(set(found) - set(expected)):
        raise ValueError(f"unexpected key(s) in the weights: {', '.join(unexpected[:5])}")
    for name, shape in expected.items():
        if found[name] != shape:
            raise ValueError(f"size mismatch for {name}: the file has {list(found[name])}, the network {list(shape)}")
