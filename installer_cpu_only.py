# PyInstaller runtime hook of the default (CPU) bundle, which leaves out cuDNN and the other GPU-only libraries of a
# CUDA torch wheel: hide any GPU from torch before it is imported, so that a machine with an NVIDIA driver runs the
# models on the CPU instead of failing (or aborting) when the missing libraries are first needed.
import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ["ALLGUI_BUNDLE"] = "cpu"
