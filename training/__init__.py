"""Recipes that train and check the models AllGUI ships (run as ``python -m training.<script>``)."""
