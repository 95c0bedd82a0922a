"""AllGUI: review of peripheral blood smear images for B-ALL subtypes."""

__version__ = "0.1.0"

DISCLAIMER = "For research and laboratory review; not a diagnosis."
