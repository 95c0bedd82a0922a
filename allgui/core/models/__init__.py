"""Classifiers behind one interface (see :mod:`allgui.core.models.base`)."""
