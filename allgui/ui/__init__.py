"""PySide6 desktop application: a thin view over allgui.core."""

from allgui.ui.refcounts import keep_singletons_alive

keep_singletons_alive()  # before any Qt call: see allgui/ui/refcounts.py
