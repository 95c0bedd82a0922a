"""The data AllGUI ships: models/, docs/USER_GUIDE.md, icons/, allgui.desktop.

Installed as the package ``allgui.assets`` (pyproject.toml maps it onto this folder) and bundled at the same place
by installer.spec; look files up through ``allgui.resources``, never by a path relative to the checkout.
"""
