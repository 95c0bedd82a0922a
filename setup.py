"""Only the package list lives here; everything else is in pyproject.toml.

The shipped data (models, user guide, icons) stays in the top-level ``resources/`` folder and is installed as the
package ``allgui.assets`` (``package-dir`` in pyproject.toml). ``[tool.setuptools.packages.find]`` cannot name a
package that lives outside its own folder, and a hand-written list would go stale whenever a subpackage is added,
so the list is found here: every ``allgui`` package plus the mapped one. ``training/`` and ``tests/`` are not
installed.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["allgui", "allgui.*"]), "allgui.assets"])
