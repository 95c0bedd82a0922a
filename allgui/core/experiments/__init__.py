"""The study's comparison and the verdict on a retrained model: specs (:mod:`.specs`), the runner (:mod:`.runner`),
its outputs (:mod:`.report`) and the comparison of a new model with the active one (:mod:`.verdict`)."""

from allgui.core.experiments.report import confusion_png, markdown_table, write_outputs
from allgui.core.experiments.runner import (
    dedupe,
    machine,
    prepare,
    run_comparison,
    run_experiment,
    with_cnn_options,
)
from allgui.core.experiments.specs import (
    EXPERIMENTS,
    QUICK_IMAGES_PER_CLASS,
    SPLIT_LABELS,
    ExperimentSpec,
    experiment_names,
    select,
)
from allgui.core.experiments.verdict import Verdict, active_overlap_note, compare_to_active

__all__ = [
    "EXPERIMENTS",
    "QUICK_IMAGES_PER_CLASS",
    "SPLIT_LABELS",
    "ExperimentSpec",
    "Verdict",
    "active_overlap_note",
    "compare_to_active",
    "confusion_png",
    "dedupe",
    "experiment_names",
    "machine",
    "markdown_table",
    "prepare",
    "run_comparison",
    "run_experiment",
    "select",
    "with_cnn_options",
    "write_outputs",
]
