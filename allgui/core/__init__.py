"""Qt-free core of AllGUI: the GUI and the CLI both call into this package."""
