"""SE-CNN training time on the CPU (and on a GPU where torch finds one), with the default recipe.

Run: .venv/bin/python -m benchmarks.bench_training [DATA_FOLDER] [--epochs N] [--device cpu|cuda|auto]

Trains ``training.recipe.RECIPE`` on the block split's training part (the last 15% of each class held out, as in
``allgui compare``) for ``--epochs`` epochs (default 3; the recipe's full run is 18 with early stopping) and prints
the time per epoch and training images per second next to a baseline measured in the same run: the bare network's
forward + backward + optimiser step on ready tensors (no decoding, no augmentation). Their ratio is how much of the
training time the network itself takes. The whole six-row comparison's time comes from ``allgui compare`` (see
docs/comparison.md and docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from pathlib import Path

import numpy as np


def network_rate(model, batch: int, device, steps: int = 8) -> float:  # noqa: ANN001 - SECNNClassifier, torch.device
    """Training images per second of forward + backward + AdamW on random tensors of the input size."""
    import torch

    from allgui.core.models.secnn.net import SECNN

    net = SECNN(model._net_config()).to(device).train()
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, model.image_size, model.image_size, device=device)
    y = torch.randint(0, 4, (batch,), device=device)
    for step in range(steps + 2):  # two warm-up steps
        if step == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    default = os.environ.get("ALLGUI_TEST_DATA", "../shared/data/taleqani-all")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=Path(default))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = parser.parse_args()

    import torch

    from allgui.core.dataset import load_labelled
    from allgui.core.models.secnn import SECNNClassifier
    from allgui.core.splits import block_split
    from training.recipe import RECIPE

    prepared = load_labelled(args.data)
    data = prepared.dataset
    train, _ = block_split(data.labels, data.numbers, prepared.group_ids, 0.15)
    options = {**RECIPE, "epochs": args.epochs, "patience": args.epochs, "device": args.device}
    model = SECNNClassifier(**options)
    device = model.device
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    threads = int(options.get("threads") or 0) or torch.get_num_threads()
    torch.set_num_threads(threads)
    print(
        f"{len(train)} training images of {len(data)} in {args.data}; recipe {RECIPE['image_size']} px, width "
        f"{RECIPE['width']}, {RECIPE['blocks']} blocks; {args.epochs} epochs on {device} ({card}); "
        f"{os.cpu_count()} cores, {threads} torch thread(s); load average {os.getloadavg()[0]:.1f}"
    )
    bare = network_rate(model, int(options["batch_size"]), device)
    lines: list[str] = []
    start = time.perf_counter()
    summary = model.fit(
        [data.paths[i] for i in train],
        data.labels[train],
        groups=prepared.group_ids[train],
        log=lambda line: lines.append(f"{time.perf_counter() - start:7.1f} s  {line}"),
    )
    total = time.perf_counter() - start
    bare_after = network_rate(model, int(options["batch_size"]), device)
    # Epoch k ends at its log line; the first starts at the line announcing the images (loading is done by then).
    ready = [float(line.split()[0]) for line in lines if "validation images" in line][:1]
    stamps = [float(line.split()[0]) for line in lines if re.search(r"epoch \d+/", line)]
    epoch_seconds = np.diff(ready + stamps) if ready else np.array([])
    fit_images = int(len(train) * 0.85)  # the fit's own validation part is about 15% of these
    rate = fit_images / float(np.median(epoch_seconds)) if len(epoch_seconds) else float("nan")
    baseline = (bare + bare_after) / 2
    print("\n".join(lines))
    print(
        f"\nfit: {total:.1f} s in all ({summary.get('epochs_run')} epochs, best {summary.get('best_epoch')}, "
        f"validation accuracy {summary.get('val_accuracy')}), median epoch {np.median(epoch_seconds):.1f} s"
    )
    print(
        f"bare network step (fwd + bwd + AdamW): {baseline:7.0f} images/s (before {bare:.0f}, after {bare_after:.0f})"
    )
    print(
        f"training epoch (augment + step + EMA): {rate:7.0f} images/s -> ratio {rate / baseline:.2f} of the bare step"
    )
    if device.type != "cuda" and not torch.cuda.is_available():
        print("no GPU visible to torch here: GPU timing not measured (the reference study: 175 s on an A100)")


if __name__ == "__main__":
    main()
