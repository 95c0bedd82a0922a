"""Python code that subprocess tests run before their own: a machine where torch and torchvision are not installed."""

# Every finder on sys.meta_path made blind to torch and torchvision, as where they are not installed: find_spec finds
# nothing and ``import torch`` raises ModuleNotFoundError, while sys.modules holds no placeholder (scipy trips on one).
HIDE_TORCH = """
import sys
HIDDEN = ("torch", "torchvision")
class _Blind:
    def __init__(self, finder):
        self._finder = finder
    def __getattr__(self, name):
        return getattr(self._finder, name)
    def find_spec(self, name, path=None, target=None):
        if name in HIDDEN or name.startswith(tuple(f"{hidden}." for hidden in HIDDEN)):
            return None
        return self._finder.find_spec(name, path, target)
sys.meta_path[:] = [_Blind(finder) for finder in sys.meta_path]
"""
