"""PySide6 desktop application: a thin view over allgui.core."""
