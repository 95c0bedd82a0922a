"""Write MODEL_CARD.md for a shipped SE-CNN folder from its manifest and the held-out evaluation.

    python -m training.model_card [FOLDER] [--heldout FILE]

The card is one of the model's files, so its SHA-256 is added to the manifest after it is written.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from allgui.core.classes import CLASS_NAMES
from allgui.core.models import store
from allgui.core.models.secnn import DEFAULTS as SECNN_DEFAULTS

CARD = "MODEL_CARD.md"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _ci(interval: list[float], percent: bool = True) -> str:
    low, high = interval
    return f"{_pct(low)}–{_pct(high)}" if percent else f"{low:.3f}–{high:.3f}"


def _speed(folder: Path) -> dict[int, float]:
    """Milliseconds per image of the plain ``predict`` with 1 and 2 CPU threads."""
    from allgui.core.imageio import read_rgb  # noqa: F401 - keeps the import cost out of the timing
    from training.foreign_images import generated_images

    loaded = store.load_model(folder)
    images = [image for _, image in generated_images(per_kind=8, seed=3)]  # 64 images at 224 px
    loaded.classifier.predict(images[:4])
    timings = {}
    previous = torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        started = time.perf_counter()
        loaded.classifier.predict(images)
        timings[threads] = (time.perf_counter() - started) / len(images) * 1000
    torch.set_num_threads(previous)
    return timings


def render(manifest: dict[str, Any], heldout: dict[str, Any] | None, size_bytes: int, speed: dict[int, float]) -> str:
    """The card's text; ``speed``: milliseconds per image by CPU thread count."""
    arch = manifest.get("architecture", {})
    fit = manifest.get("fit", {})
    review = manifest.get("review", {})
    training = manifest.get("training", {})
    widths = [min(arch.get("width", 16) * 2**i, arch.get("width", 16) * 8) for i in range(arch.get("blocks", 5))]
    lines = [
        f"# Model card: {manifest['id']} ({manifest.get('title', '')})",
        "",
        "**For research and laboratory review; not a diagnosis.** The model sorts peripheral blood smear field",
        "images into Benign (hematogones), Early Pre-B, Pre-B and Pro-B and says when a person must look",
        "(`needs_review`). Every result is to be checked by a qualified person; it never replaces flow cytometry.",
        "",
        "## Model",
        f"- Squeeze-and-excitation CNN trained from scratch: {arch.get('blocks')} blocks of "
        f"{arch.get('convs_per_block')} conv3x3+BatchNorm+ReLU, each followed by an SE block (reduction "
        f"{arch.get('reduction')}) and 2x2 max pooling; channels {widths}; global average pooling, dropout "
        f"{arch.get('dropout')}, linear head.",
        f"- Input: {manifest.get('input_size')} px RGB, {manifest.get('normalisation')}"
        + (
            "; JPEG files are decoded at reduced scale (libjpeg's DCT scaling: 1/2 for these 224 px images) before "
            "the bilinear resize, in training and in use alike."
            if manifest.get("recipe", {}).get("jpeg_draft")
            else "."
        ),
        f"- Files: {size_bytes / 1e6:.2f} MB in total (weights, calibration statistics, configuration, this card).",
        f"- Temperature (calibration): {manifest.get('temperature', fit.get('temperature')):.3f}; "
        f"review policy: confidence below {review.get('min_confidence')}, "
        + (
            f"a malignant call with Benign probability {review['benign_alert']:.4g} or more, "
            if review.get("benign_alert") is not None
            else ""
        )
        + f"or OOD score above {review.get('ood_threshold')} -> needs_review.",
        f"- Recipe: `{json.dumps(manifest.get('recipe', {}))}`; trained for {fit.get('epochs_run')} epochs, "
        f"checkpoint of epoch {fit.get('best_epoch')} (weight average, lowest validation loss), "
        f"{fit.get('fit_seconds')} s on {fit.get('device')}.",
        "",
        "## Training data and its known biases",
        f"- Trained on {training.get('images')} images ("
        + ", ".join(f"{name} {count}" for name, count in (training.get("per_class") or {}).items())
        + ") of the 2767-image Taleqani "
        "Hospital data (224x224 JPEG, one Zeiss microscope at 100x, labels confirmed by flow cytometry; "
        "Aria et al. 2021, Ghaderzadeh et al. 2022); "
        + (
            f"{training['heldout_images']} later captures were held out for the evaluation below."
            if training.get("heldout_images")
            else "none was held out: the evaluation below is of a sibling trained one block earlier in capture "
            "order (first 85% of each class)."
        ),
        f"- {training.get('duplicate_groups')} groups of exact or near-duplicate images (pHash distance <= 4) were "
        "kept whole on one side of every split.",
        "- Classes were imaged in separate sessions: stain colour, background tint and the corner scale-bar label "
        "differ by class, so colour alone predicts much of the label (see the colour-only baseline below). "
        + _countermeasures(manifest.get("recipe", {}))
        + " The shortcut tests below measure how far the model still leans on colour.",
        "- Only one laboratory, one scanner, one magnification. Images from anywhere else are outside what the "
        "model has seen; the OOD score exists to flag them.",
        f"- Of these, {fit.get('validation_images')} images ({training.get('validation')}) were the validation "
        "part: they chose the checkpoint and fitted the temperature and review thresholds; the network's weights "
        "learnt from the rest.",
        "",
    ]
    if heldout is None:
        lines += ["## Held-out evaluation", "", "Not run for this folder.", ""]
    else:
        h = heldout["heldout"]
        split = heldout["split"]
        recall = h["per_class_recall"]
        lines += [
            "## Held-out evaluation (later capture blocks)",
            f"The recipe was chosen and checked by training on the first {1 - split['test_fraction']:.0%} of each "
            f"class by capture number ({split['train']} images) and testing on the last "
            f"{split['test_fraction']:.0%} ({split['heldout']} images: "
            + ", ".join(f"{CLASS_NAMES[int(k)]} {v}" for k, v in split["heldout_per_class"].items())
            + "). These later blocks stand in for later imaging sessions"
            + (
                ". The figures are for the shipped weights themselves"
                if manifest.get("training", {}).get("heldout_images")
                else "; the shipped model was then trained the same way on all the data, one block later: its weights "
                "on the first 85%, its checkpoint, temperature and review thresholds on the newest 15%"
            )
            + f". Run {heldout['date']}: `{heldout['command']}`.",
            "",
            "| metric | value | 95% CI |",
            "|---|---|---|",
            f"| accuracy | {_pct(h['accuracy'])} | {_ci(h['accuracy_ci95'])} (Wilson) |",
            f"| macro-F1 | {h['f1_macro']:.4f} | {_ci(h['macro_f1_ci95'], False)} (bootstrap) |",
            f"| weighted F1 | {h['f1_weighted']:.4f} | |",
            f"| Benign recall | {recall['Benign']:.4f} | {_ci(h['benign_recall_ci95'], False)} (Wilson) |",
            "| recall Early Pre-B / Pre-B / Pro-B | "
            f"{recall['Early Pre-B']:.4f} / {recall['Pre-B']:.4f} / {recall['Pro-B']:.4f} | |",
            f"| ECE (10 bins), after temperature scaling | {h['ece']:.4f} | |",
            f"| ECE before temperature scaling | {h['ece_uncalibrated']:.4f} | |",
            "",
            f"Confusion matrix (rows true, columns predicted, order {', '.join(CLASS_NAMES)}): "
            f"`{h['confusion_matrix']}`.",
            "",
            "Targets (issue 7) on held-out blocks, as measured: "
            + "; ".join(
                f"{name} {'met' if ok else 'MISSED'}"
                for name, ok in (
                    ("accuracy >= 99%", h["accuracy"] >= 0.99),
                    ("macro-F1 >= 0.99", h["f1_macro"] >= 0.99),
                    ("Benign recall >= 0.97", recall["Benign"] >= 0.97),
                    ("ECE <= 0.03", h["ece"] <= 0.03),
                    ("<= 5% flagged", heldout["review"]["flagged_rate"] <= 0.05),
                    (
                        "every misclassified image flagged",
                        heldout["review"]["misclassified_flagged"] == heldout["review"]["misclassified"],
                    ),
                    (">= 95% of foreign images flagged", heldout["foreign"]["flagged_rate"] >= 0.95),
                )
            )
            + ". The main error is Benign (hematogones) taken for Early Pre-B, often with high confidence, so "
            "confidence alone cannot send those images for review.",
            "",
            *_newest_blocks(manifest),
            "## needs_review",
        ]
        r = heldout["review"]
        f = heldout["foreign"]
        lines += [
            f"- Held-out blocks: {_pct(r['flagged_rate'])} flagged (95% CI {_ci(r['flagged_ci95'])}; "
            f"low confidence {_pct(r['flagged_low_confidence_rate'])}, "
            + (
                f"Benign not ruled out {_pct(r['flagged_benign_alert_rate'])}, "
                if "flagged_benign_alert_rate" in r
                else ""
            )
            + f"unlike training images "
            f"{_pct(r['flagged_ood_rate'])}); misclassified {r['misclassified']}, of them flagged "
            f"{r['misclassified_flagged']}. Target: <= 5% flagged, every misclassified image flagged.",
            f"- Not this laboratory's smears ({f['images']} generated, altered or real non-smear images): "
            f"{_pct(f['flagged_rate'])} flagged (95% CI {_ci(f['flagged_ci95'])}); target >= 95%. By kind:",
            "",
            "| kind | flagged |",
            "|---|---|",
            *[f"| {kind} | {_pct(rate)} |" for kind, rate in f["flagged_by_kind"].items()],
            "",
            f"- OOD score (Mahalanobis on the network's features and on colour/texture statistics) separates these "
            f"from held-out smears with AUROC {f['auroc_ood_score']}; the maximum softmax probability alone gives "
            f"{f['auroc_max_softmax']}. They are generated here (noise, blank, gradients, stripes, 1/f pictures, "
            "shapes, text; held-out smears recoloured as H&E, Papanicolaou, DAB, hue-rotated, inverted, zoomed 4-8x, "
            "shrunk 4x), plus real pictures that scikit-image ships (one immunohistochemistry tissue image, grey cell "
            "microscopy, retina fundus, astronomy, photographs, textures, a scanned page: tiles and whole pictures); "
            "real blood smears from other laboratories were not available.",
            "",
            *_review_rule(),
            *_validation_split(),
            "## Shortcut tests (held-out blocks, colour cues removed at test time)",
            "",
            "| input | accuracy | Benign recall | macro-F1 |",
            "|---|---|---|---|",
            f"| as is | {_pct(h['accuracy'])} | {recall['Benign']:.3f} | {h['f1_macro']:.3f} |",
            *[
                f"| {name} | {_pct(v['accuracy'])} | {v['benign_recall']:.3f} | {v['macro_f1']:.3f} |"
                for name, v in heldout["shortcut_tests"].items()
            ],
        ]
        lines += [
            "",
            "The model fills the scale-bar corner with the image's median colour itself, so masking it at test time "
            "changes nothing by construction"
            + (
                "; its per-image channel standardisation removes most of what the stain normalisation changes. "
                if manifest.get("recipe", {}).get("normalise", "image") == "image"
                else ". The stain normalisation gives every image the training images' average stain, taking away "
                "the colour differences between the classes' sessions that this model partly reads. "
            )
            + "Grey-scale input is the strict test of colour reliance.",
        ]
        baseline = heldout.get("colour_baseline")
        if baseline:
            lines += [
                "",
                "Colour-only baseline (logistic regression on channel means/stds and a colour histogram), same split: "
                + "; ".join(
                    f"{name}: accuracy {_pct(v['accuracy'])}, Benign recall {v['benign_recall']:.3f}"
                    for name, v in baseline.items()
                )
                + ".",
            ]
        lines.append("")
        lines += _drift()
    lines += _recipe_search() + _colour_recipes() + _ensemble()
    everything = not training.get("heldout_images")
    lines += [
        "## Speed",
        f"Classification including reading the OOD statistics, on this machine's CPU (Intel Xeon, 2 cores): "
        f"{speed[1]:.1f} ms per image with 1 thread, {speed[2]:.1f} ms with 2 threads (batch of 64 images at 224 px; "
        "decoding JPEG files not included), measured through the plain `predict`; `allgui classify` uses the "
        "faster path in `allgui/core/inference.py` (docs/performance.md).",
        "",
        "## Reproduce",
        "```",
        "python -m training.train_default         # held-out run: first 85% of each class, measured on the last 15%; "
        "writes training/results/heldout.json",
        "python -m training.train_default --all   # the shipped model: weights on the first 85%, checkpoint and "
        "thresholds on the newest 15%",
        "```",
        "The data comes from `ALLGUI_TEST_DATA` or `../shared/data/taleqani-all`. Training is seeded and "
        "reproducible on the CPU with one thread (rerunning the held-out run gave the recipe search's figures to "
        "the last digit); other machines and thread counts train other weights, with figures within noise (the "
        "previous recipe scored 97.4-97.6% on an NVIDIA H200 against 97.4% on this CPU).",
        "",
        "## Known gaps",
        *_gaps(heldout),
        (
            "- The held-out figures are those of the sibling model trained one block earlier with the same recipe "
            "and seed; no later images are left here to measure the shipped weights themselves on. Those weights "
            "did not learn from the newest 15% of captures, which chose their checkpoint and fitted their "
            'thresholds (see "Which images fit the thresholds").'
            if everything
            else "- This model has not learnt from the latest 15% of captures (kept for honest figures); `--all` "
            "uses them as its validation part, at the cost of a card measured on a sibling model."
        ),
        "- The OOD checks use generated pictures, altered smears and scikit-image's sample pictures; real blood "
        "smears from other laboratories (another stain protocol, scanner or magnification), the hardest case, were "
        "not available here.",
        "",
    ]
    return "\n".join(lines)


def _gaps(heldout: dict[str, Any] | None) -> list[str]:
    """Known gaps read off the held-out figures: missed targets and what removing colour costs."""
    if heldout is None:
        return []
    h, review, tests = heldout["heldout"], heldout["review"], heldout["shortcut_tests"]
    missed = [
        name
        for name, ok in (
            (f"accuracy >= 99% ({_pct(h['accuracy'])})", h["accuracy"] >= 0.99),
            (f"macro-F1 >= 0.99 ({h['f1_macro']:.4f})", h["f1_macro"] >= 0.99),
            (f"Benign recall >= 0.97 ({h['per_class_recall']['Benign']:.4f})", h["per_class_recall"]["Benign"] >= 0.97),
            (f"<= 5% flagged ({_pct(review['flagged_rate'])})", review["flagged_rate"] <= 0.05),
            (
                f"every misclassified image flagged ({review['misclassified_flagged']} of {review['misclassified']})",
                review["misclassified_flagged"] == review["misclassified"],
            ),
        )
        if not ok
    ]
    lines = [f"- Targets missed on held-out blocks: {'; '.join(missed)}."] if missed else []
    seeds = [run for run in (_result("colour-recipes.json") or {}).get("runs", []) if run["name"].startswith(SHIPPED)]
    if len(seeds) > 1:
        benign = [run["benign_recall"] for run in seeds]
        lines.append(
            f"- One training run is not the recipe: over {len(seeds)} seeds the shipped recipe scored "
            f"{_span(seeds, 'accuracy')} (mean {_mean(seeds, 'accuracy')}) and Benign recall "
            f"{min(benign):.3f}-{max(benign):.3f}; a retraining (another seed, machine or thread "
            "count) is as likely to land anywhere in that range as on the figures above."
        )
    grey, stain = tests["greyscale"]["accuracy"], tests["stain-normalised"]["accuracy"]
    baseline = (heldout.get("colour_baseline") or {}).get("greyscale", {}).get("accuracy")
    lines.append(
        f"- Colour reliance: held-out accuracy {_pct(h['accuracy'])} falls to {_pct(grey)} on grey-scale input and "
        f"to {_pct(stain)} after stain normalisation"
        + (f" (the colour-only baseline falls to {_pct(baseline)} on grey-scale input)" if baseline else "")
        + ". A later session stained differently from these would cost accuracy in the same way. The OOD score "
        "flagged every strongly recoloured smear (H&E-, Papanicolaou-, DAB-like, hue-rotated)." + _drift_gap()
    )
    return lines


def _drift_gap() -> str:
    """The milder drifts of training/results/stain-drift.json, for the shipped recipe (its first model)."""
    data = _result("stain-drift.json")
    if data is None:
        return " Whether it flags a milder stain drift was not tested."
    rows = {(r["drift"].split()[0], r["strength"]): r for r in data["models"][0]["rows"]}
    mild = [rows[("stain", 0.1)], rows[("stain", 0.2)]]
    strong, light = rows[("stain", 0.3)], rows[("illumination", 0.1)]
    return (
        ' Milder drifts ("A later session stained or lit differently", held-out sibling, means over 6 simulated '
        f"sessions): random changes of up to +-10-20% in each channel's stain keep {_span(mild, 'accuracy')}, "
        f"+-30% gives {_pct(strong['accuracy'])} (worst session {_pct(strong['worst_accuracy'])}) with "
        f"{strong['errors_unflagged']} errors unflagged; random changes of up to +-10% in each channel's brightness "
        f"(lamp, camera white balance; brightened channels clip at white) drop accuracy to {_pct(light['accuracy'])} "
        f"(worst session {_pct(light['worst_accuracy'])}), the OOD check then flagging {_pct(light['flagged_rate'])} "
        f"of the images, with {light['errors_unflagged']} errors unflagged. Training with such brightness changes "
        "(gain96) kept accuracy under them but cost 3 points on the unchanged held-out blocks, and at half the "
        'strength (gainlow96) still 2-3 points ("Colour versus morphology"). Keep the lamp and the camera\'s '
        "white balance fixed, and retrain on the laboratory's own images (the retraining wizard) after changing them."
    )


def _countermeasures(recipe: dict[str, Any]) -> str:
    """What the recipe does against the colour shortcut, in words."""
    options = {**SECNN_DEFAULTS, **recipe}
    steps = ["masks the scale-bar corner"] if options["mask_corner"] else []
    if options["normalise"] == "image":
        steps.append("standardises each image's colour channels")
    augment = [
        name
        for name, key in (("grey-scale", "grey_prob"), ("colour", "colour_jitter"), ("stain", "stain_jitter"))
        if options[key] > 0
    ]
    if augment:
        names = ", ".join(augment[:-1]) + " and " + augment[-1] if len(augment) > 1 else augment[0]
        grey = f" (grey-scale for {options['grey_prob']:.0%} of the images)" if options["grey_prob"] > 0 else ""
        steps.append(f"trains with {names} augmentation{grey}")
    if options["stain_transfer"] > 0:
        steps.append(
            f"re-stains {options['stain_transfer']:.0%} of its training images with the stain of another training "
            "image of any class, so that it must also classify when the stain says nothing about the class"
        )
    if not steps:
        return "The model keeps every colour cue."
    return "The model " + (", ".join(steps[:-1]) + " and " + steps[-1] if len(steps) > 1 else steps[0]) + "."


def _colour_run_sentence(runs: list[dict[str, Any]]) -> str:
    colour = next((run for run in runs if run["name"].startswith("plain96")), None)
    if colour is None:
        return ""
    return (
        f" Keeping the colour (plain96: fixed normalisation, no grey-scale or stain augmentation) reached "
        f"{_pct(colour['accuracy'])} with Benign recall {colour['benign_recall']:.3f}, but "
        f"{_pct(colour['greyscale_accuracy'])} on grey-scale input: it reads the stain colour that tells these "
        "classes' sessions apart, the shortcut a model must not depend on."
    )


def _review_rule() -> list[str]:
    """Low confidence alone against low confidence plus the Benign alert (training/results/review-rule.json)."""
    data = _result("review-rule.json")
    if data is None:
        return []
    rules = list(data["models"][0]["rules"])
    lines = [
        "### Why the Benign alert",
        "Every held-out error of the shipped recipe's seeds 0-2 was a Benign image called malignant, some at "
        "0.99 confidence, where a confidence minimum cannot flag them without flagging many more; but their Benign "
        "probability (0.01-49%) stayed above that of almost every correct malignant call. So a share of the review "
        "budget moved from low confidence to malignant calls with the highest Benign probability. The rule was "
        "designed on seeds 0-2 and declared, with its acceptance test (at least as many errors flagged, flag rate at "
        "most 1 point higher on average), before it was checked on models not yet looked at (the other rows). "
        f"Thresholds fitted on each model's validation part, figures on the held-out blocks ({data['date']}, "
        "`training/results/review-rule.json`):",
        "",
        "| model | accuracy | errors | " + " | ".join(f"{rule}: flagged, errors flagged" for rule in rules) + " |",
        "|---|---|---|" + "---|" * len(rules),
    ]
    for m in data["models"]:
        cells = [
            f"{_pct(m['rules'][rule]['flagged_rate'])}, {m['rules'][rule]['misclassified_flagged']}" for rule in rules
        ]
        lines.append(f"| {m['model']} | {_pct(m['accuracy'])} | {m['misclassified']} | " + " | ".join(cells) + " |")
    designed = set(data.get("designed_on", []))
    groups = [("In all", data["models"])]
    if designed:
        checked = [m for m in data["models"] if m["model"] not in designed]
        groups.append(("On the models it was not designed on", checked))
    lines.append("")
    for title, models in groups:
        errors = sum(m["misclassified"] for m in models)
        lines.append(
            f"{title}: "
            + "; ".join(
                f"{rule} flags {sum(m['rules'][rule]['misclassified_flagged'] for m in models)} of {errors} errors, "
                f"{_pct(sum(m['rules'][rule]['flagged_rate'] for m in models) / len(models))} of images on average"
                for rule in rules
            )
            + "."
        )
    lines.append("")
    return lines


def _newest_blocks(manifest: dict[str, Any]) -> list[str]:
    """The shipped weights on their own validation part, the newest 15% (models trained with --all)."""
    own = manifest.get("metrics", {}).get("newest_blocks")
    if not own:
        return []
    fit = manifest.get("fit", {})
    return [
        f"The shipped weights themselves learnt from the first 85% of each class (this split's training part). On "
        f"the last 15% ({own['images']} images), their validation part, they score accuracy {_pct(own['accuracy'])}, "
        f"macro-F1 {own['macro_f1']:.3f}, Benign recall {own['benign_recall']:.3f}, {own['misclassified']} errors "
        f"({own['misclassified_flagged']} flagged). Not an independent test: these images chose the checkpoint (epoch "
        f"{fit.get('best_epoch')} of {fit.get('epochs_run')}) and fitted the temperature and review thresholds, so "
        f"their flag rate ({_pct(own['flagged_rate'])}) is set by the review budgets.",
        "",
    ]


def _validation_split() -> list[str]:
    """Last blocks against random groups as the validation part (training/results/validation-split.json)."""
    data = _result("validation-split.json")
    if data is None:
        return []
    lines = [
        "### Which images fit the thresholds",
        "The validation part chooses the checkpoint and fits the temperature and review thresholds. Images from the "
        "same sessions as the training ones (a random 15% of the duplicate groups, what `--all` used before) make "
        "an easy validation part: the thresholds then expect a later session to look like the training ones. "
        f"Measured on the held-out blocks, {data['what']} ({data['date']}, "
        "`training/results/validation-split.json`; review rule as shipped):",
        "",
        "| seed | validation part | accuracy | Benign recall | errors (flagged) | flagged | checkpoint epoch |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {r['seed']} | {r['validation']} | {_pct(r['accuracy'])} | {r['benign_recall']:.3f} | "
            f"{r['misclassified']} ({r['misclassified_flagged']}) | {_pct(r['flagged_rate'])} | "
            f"{r['best_epoch']} of {r['epochs_run']} |"
            for r in data["runs"]
        ],
        "",
    ]
    kinds = dict.fromkeys(r["validation"] for r in data["runs"])
    summary = []
    for kind in kinds:
        runs = [r for r in data["runs"] if r["validation"] == kind]
        summary.append(
            f"{kind}: accuracy {_pct(sum(r['accuracy'] for r in runs) / len(runs))} on average, "
            f"{sum(r['misclassified_flagged'] for r in runs)} of {sum(r['misclassified'] for r in runs)} errors "
            f"flagged, {_pct(sum(r['flagged_rate'] for r in runs) / len(runs))} flagged"
        )
    lines += [
        "; ".join(summary)
        + ". A random validation part flags fewer images but leaves more errors unflagged, and it scored lower on "
        "average (within seed noise: 1-3 images per seed), so the shipped model takes the newest sessions as its "
        "validation part (decided by a rule written down before seeds 0 and 1 were compared: switch if the random "
        "part flags a smaller share of its errors; seed 2 came after, as a check). Three seeds are thin evidence.",
        "",
    ]
    return lines


def _drift() -> list[str]:
    """Held-out images under a session-wide stain or illumination drift (training/results/stain-drift.json)."""
    data = _result("stain-drift.json")
    if data is None:
        return []
    models = data["models"]
    lines = [
        "### A later session stained or lit differently",
        f"Every held-out image of a simulated session gets the same drift ({data['heldout']}; {data['date']}, "
        "`training/results/stain-drift.json`). Strength s: each colour channel's optical density (stain) or "
        "brightness (lamp, white balance) multiplied by a random factor between 1 - s and 1 + s, one draw per "
        "session, the same sessions for every model. Per cell: mean accuracy (worst session), share flagged, "
        "errors not flagged summed over the sessions.",
        "",
        "| drift | s | sessions | " + " | ".join(m["model"] for m in models) + " |",
        "|---|---|---|" + "---|" * len(models),
    ]
    for index, row in enumerate(models[0]["rows"]):
        cells = [
            f"{_pct(r['accuracy'])} ({_pct(r['worst_accuracy'])}), {_pct(r['flagged_rate'])}, {r['errors_unflagged']}"
            for r in (m["rows"][index] for m in models)
        ]
        lines.append(f"| {row['drift']} | {row['strength']:g} | {row['sessions']} | " + " | ".join(cells) + " |")
    return lines + [""]


def _ensemble() -> list[str]:
    """Seeds of the shipped recipe alone and averaged (training/results/ensemble.json)."""
    data = _result("ensemble.json")
    if data is None:
        return []
    *single, average = data["models"]
    always = set.intersection(*(set(m["wrong"]) for m in data["models"]))
    return [
        "### Averaging seeds",
        f"Seeds of the shipped recipe, each alone and with their calibrated probabilities averaged ({data['date']}, "
        "`training/results/ensemble.json`; review thresholds fitted on the shared validation part, the ensemble's "
        "on its averaged probabilities):",
        "",
        "| model | accuracy | macro-F1 | Benign recall | ECE | errors (flagged) | flagged |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {m['model']} | {_pct(m['accuracy'])} | {m['macro_f1']:.3f} | {m['benign_recall']:.3f} | "
            f"{m['ece']:.4f} | {m['misclassified']} ({m['misclassified_flagged']}) | {_pct(m['flagged_rate'])} |"
            for m in data["models"]
        ],
        "",
        f"The average scores {_pct(average['accuracy'])}, within the seeds' range "
        f"({_pct(min(m['accuracy'] for m in single))}-{_pct(max(m['accuracy'] for m in single))}), at "
        f"{len(single)} times the inference time: the seeds share their errors"
        + (
            f" ({len(always)} images wrong for every model and for the average: {', '.join(sorted(always))})"
            if always
            else ""
        )
        + ". Not shipped.",
        "",
    ]


def _result(name: str) -> dict[str, Any] | None:
    """A measurement file of training/results, or None where it was not made."""
    path = Path(__file__).resolve().parent / "results" / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _colour_recipes() -> list[str]:
    """The colour-handling variants of the recipe (training/results/colour-recipes.json), when it is there."""
    data = _result("colour-recipes.json")
    if data is None:
        return []
    fixed = [run for run in data["runs"] if run["options"].get("normalise") == "fixed"]
    colour = [run for run in fixed if not run["options"].get("stain_transfer")]
    transfer = [run for run in fixed if run["options"].get("stain_transfer")]
    lines = [
        "## Colour versus morphology",
        f"{data['what'][0].upper() + data['what'][1:]} ({data['date']}, `training/results/colour-recipes.json`). "
        f"Rule for the shipped recipe, {data['rule']}:",
        "",
        "| recipe | colour handling | accuracy | macro-F1 | Benign recall | grey-scale | stain-normalised | errors "
        "(flagged) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in data["runs"]:
        lines.append(
            f"| {run['name']} | {run['what']} | {_pct(run['accuracy'])} | {run['macro_f1']:.3f} | "
            f"{run['benign_recall']:.3f} | {_pct(run['greyscale_accuracy'])} | "
            f"{_pct(run['stain_normalised_accuracy'])} | {run['misclassified']} ({run['misclassified_flagged']}) |"
        )
    if colour:
        lines += [
            "",
            f"Keeping the global stain colour (fixed normalisation) reaches {_span(colour, 'accuracy')} on these "
            f"later blocks, but {_span(colour, 'stain_normalised_accuracy')} once the stain is normalised: that "
            "extra accuracy is the colour that tells the classes' imaging sessions apart, which need not hold for "
            "another day's or another laboratory's staining.",
        ]
    if transfer:
        lines.append(
            f"Re-staining part of the training images with other images' stains (stain transfer) keeps "
            f"{_span(transfer, 'accuracy')} with {_span(transfer, 'greyscale_accuracy')} on grey-scale and "
            f"{_span(transfer, 'stain_normalised_accuracy')} on stain-normalised input: the network still reads the "
            "colour when it is there, but no longer depends on it."
        )
    seeds = [
        (f"{name} ({what})", runs)
        for name, what in SEEDED_RECIPES
        if len(runs := [run for run in data["runs"] if run["name"].startswith(name)]) > 1
    ]
    if seeds:
        shipped = seeds[0][1]
        lines.append(
            "Over seeds: "
            + "; ".join(
                f"{title} {_mean(runs, 'accuracy')} on average over {len(runs)} seeds ({_span(runs, 'accuracy')}), "
                f"grey-scale {_mean(runs, 'greyscale_accuracy')}, stain-normalised "
                f"{_mean(runs, 'stain_normalised_accuracy')}"
                for title, runs in seeds
            )
            + ". The held-out figures at the top of this card are for seed 0, the seed the shipped weights were "
            "trained with; across seeds the shipped recipe's held-out accuracy spans "
            f"{100 * (max(r['accuracy'] for r in shipped) - min(r['accuracy'] for r in shipped)):.1f} points."
        )
    lines.append("")
    return lines


# The shipped recipe's runs in colour-recipes.json (name prefix).
SHIPPED = "draft96-p1"
# Recipes run with several seeds (name prefix in colour-recipes.json, what it is), the shipped one first.
SEEDED_RECIPES = (
    (SHIPPED, "the shipped recipe"),
    ("transfer96-p1", "the same with full-size JPEG decoding"),
    ("draft96-p2", "the previous recipe with half-scale JPEG decoding"),
    ("transfer96-p2", "the previous shipped recipe"),
    ("base96", "the one before, per-image standardisation"),
)


def _mean(runs: list[dict[str, Any]], key: str) -> str:
    return _pct(sum(run[key] for run in runs) / len(runs))


def _span(runs: list[dict[str, Any]], key: str) -> str:
    low, high = min(run[key] for run in runs), max(run[key] for run in runs)
    return _pct(low) if low == high else f"{_pct(low)}-{_pct(high)}"


def _recipe_search() -> list[str]:
    """The recipe search on a GPU machine (training/results/sweep-h200.json), when it is there."""
    sweep = _result("sweep-h200.json")
    if sweep is None:
        return []
    lines = [
        "## Recipe search",
        f"{len(sweep['runs'])} trainings of {sweep['what']} ({sweep['date']}, {sweep['machine']}; "
        "`training/results/sweep-h200.json`). Larger inputs (128-160 px with a stride-2 first convolution), "
        "wider or deeper blocks, fixed colour normalisation with the same augmentation, label smoothing and longer "
        "training scored at or below the per-image-normalised 96 px recipe (base96, shipped until the "
        "stain-transfer recipe below replaced it)." + _colour_run_sentence(sweep["runs"]),
        "",
        "| run | accuracy | macro-F1 | Benign recall | ECE | flagged | errors (flagged) | grey-scale | epochs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in sweep["runs"]:
        lines.append(
            f"| {run['name']} | {_pct(run['accuracy'])} | {run['macro_f1']:.3f} | {run['benign_recall']:.3f} | "
            f"{run['ece']:.3f} | {_pct(run['flagged_rate'])} | {run['misclassified']} "
            f"({run['misclassified_flagged']}) | {_pct(run['greyscale_accuracy'])} | {run['epochs_run']}"
            f"{' (cut)' if run['cut_at_deadline'] else ''} |"
        )
    lines += [
        "",
        "Of the 64 held-out Benign images, 7 were taken for Early Pre-B or Pre-B by all 13 sweep models and 4 more "
        "by 10 to 12 of them, all from numbers 378-423 (the class's latest session): the gap to the targets is a "
        "session shift that no recipe here closed.",
        "",
    ]
    for name in ("recency.json", "recency-transfer.json"):
        data = _result(name)
        if data is None:
            continue
        lines += [f"Later sessions: {data['what']} ({data['date']}, `training/results/{name}`):", ""]
        lines += [
            f"- trained on {m['trained_on']}: accuracy {_pct(m['accuracy'])}, Benign recall "
            f"{m['benign_recall']:.3f}, {m['errors']} errors of which {m['errors_flagged']} flagged, "
            f"{_pct(m['flagged_rate'])} flagged"
            for m in data["models"]
        ]
        wrong = data.get("wrong_in_all", data.get("wrong_in_all_three", []))
        lines += [
            "",
            (
                f"Wrong for every one of these models, including any that learnt from them: {len(wrong)} images ("
                + ", ".join(wrong)
                + ")."
                if wrong
                else "No image is wrong for every one of these models."
            ),
            "",
        ]
    return lines


def write_card(folder: Path, heldout: dict[str, Any] | None) -> Path:
    """Write the card into a saved model folder and add its checksum to the manifest."""
    folder = Path(folder)
    card = folder / CARD
    if card.exists():
        card.unlink()
    manifest = store.read_manifest(folder)
    manifest["files"].pop(CARD, None)
    store.write_json_atomic(folder / store.MANIFEST, manifest)
    speed = {threads: round(ms, 2) for threads, ms in _speed(folder).items()}
    card.write_text(render(manifest, heldout, card_size(folder, manifest), speed), encoding="utf-8")
    manifest["files"][CARD] = store.sha256_of(card)
    manifest.setdefault("metrics", {})["speed_ms_per_image_cpu"] = {str(k): v for k, v in speed.items()}
    store.write_json_atomic(folder / store.MANIFEST, manifest)
    return card


def card_size(folder: Path, manifest: dict[str, Any]) -> int:
    """Bytes of the model's files, the card not counted (it is written after)."""
    return sum((folder / name).stat().st_size for name in manifest["files"] if name != CARD)


def main(argv: list[str] | None = None) -> int:
    from allgui.resources import shipped_models_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=shipped_models_dir() / "secnn-default")
    parser.add_argument("--heldout", type=Path, default=Path(__file__).resolve().parent / "results" / "heldout.json")
    args = parser.parse_args(argv)
    heldout = json.loads(args.heldout.read_text(encoding="utf-8")) if args.heldout.is_file() else None
    print(write_card(args.folder, heldout))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
