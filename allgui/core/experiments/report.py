"""A comparison's outputs: results.json, a Markdown table and one confusion-matrix PNG per experiment."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from allgui import DISCLAIMER
from allgui.core.classes import CLASS_NAMES
from allgui.core.statefile import write_bytes_atomic


def write_outputs(results: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())
    write_bytes_atomic(out_dir / "results.md", markdown_table(results).encode())
    for result in results["experiments"]:
        if "metrics" in result:
            image = confusion_png(
                result["metrics"]["confusion_matrix"], f"{result['name']} ({results['split']['name']} split)"
            )
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            write_bytes_atomic(out_dir / f"confusion-{result['name']}.png", buffer.getvalue())


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def markdown_table(results: dict[str, Any]) -> str:
    split = results["split"]
    lines = [
        f"# Model comparison{' (quick configuration)' if results.get('quick') else ''}",
        "",
        f"*{DISCLAIMER}*",
        "",
        f"- Split: **{split['label']}**",
        f"- Data: `{results['data']['root']}`: {results['data']['images']} images, "
        f"{split['train_images']} train / {split['test_images']} test "
        f"({', '.join(f'{k} {v}' for k, v in split['test_counts'].items())} in test)",
        f"- Run: {results['created']} on {results['machine'].get('processor')} "
        f"({results['machine'].get('cpu_count')} CPUs)"
        + (f"; command `{results['command']}`" if results["command"] else ""),
        *(
            [f"- SE-CNN rows run with {', '.join(f'{k}={v}' for k, v in results['cnn_options'].items())}"]
            if results.get("cnn_options")
            else []
        ),
        "",
        "Percentages on the held-out part. Weighted averages as the study reports them; macro averages and per-class "
        "recall show the small Benign class.",
        "",
        "| Experiment | Acc | P (w) | R (w) | F1 (w) | P (m) | R (m) | F1 (m) | Recall Benign / Early / Pre / Pro "
        "| De-dup removed | Fit s | Predict ms/img |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["experiments"]:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: {r['error'][:80]} |  |  |  |  |  |  |  |  |  |  |")
            continue
        m = r["metrics"]
        recalls = " / ".join(_pct(m["per_class_recall"][n]) for n in CLASS_NAMES)
        lines.append(
            f"| {r['name']} | {_pct(m['accuracy'])} | {_pct(m['precision_weighted'])} | {_pct(m['recall_weighted'])} "
            f"| {_pct(m['f1_weighted'])} | {_pct(m['precision_macro'])} | {_pct(m['recall_macro'])} "
            f"| {_pct(m['f1_macro'])} | {recalls} | {r['removed_by_dedup']} | {r['fit_seconds']:.0f} "
            f"| {r['predict_ms_per_image']:.1f} |"
        )
    lines += ["", "| Experiment | What it is | Study row |", "|---|---|---|"]
    lines += [
        f"| {r['name']} | {r['title']} | {r.get('study_row') or '(ours: shortcut detector)'} |"
        for r in results["experiments"]
    ]
    if results.get("cancelled"):
        lines += ["", "**Cancelled before all experiments finished.**"]
    return "\n".join(lines) + "\n"


def confusion_png(matrix: list[list[int]], title: str, cell: int = 72) -> Image.Image:
    """A confusion matrix as an image (rows: true class, columns: predicted), shaded by row share."""
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    names = ["Benign", "Early", "Pre-B", "Pro-B"]
    font = ImageFont.load_default(size=13)
    left, top = 110, 60
    size = len(names)
    image = Image.new("RGB", (left + size * cell + 20, top + size * cell + 50), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), title, fill="black", font=font)
    draw.text((left, top - 40), "predicted", fill="black", font=font)
    draw.text((10, top + size * cell + 20), "rows: true class", fill="black", font=font)
    for j, name in enumerate(names):
        draw.text((left + j * cell + 6, top - 20), name, fill="black", font=font)
    for i, name in enumerate(names):
        draw.text((10, top + i * cell + cell // 2 - 7), name, fill="black", font=font)
        for j in range(size):
            shade = int(255 - 200 * shares[i, j])
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 2, top + (i + 1) * cell - 2)
            draw.rectangle(box, fill=(shade, shade, 255), outline=(160, 160, 160))
            ink = "white" if shares[i, j] > 0.55 else "black"
            draw.text((box[0] + 8, box[1] + cell // 2 - 16), f"{int(counts[i, j])}", fill=ink, font=font)
            draw.text((box[0] + 8, box[1] + cell // 2 + 2), f"{100 * shares[i, j]:.0f}%", fill=ink, font=font)
    return image
