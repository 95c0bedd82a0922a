"""The SE-CNN's options: network size, optimisation, input handling, augmentation and review-policy fitting.

:class:`SECNNOptions` is also a mapping with the same keys: the classifier's ``options`` are read as a dict by its
callers (the model store writes them to ``secnn.json``, the training scripts compare them with a recipe), and
``secnn.json`` holds them as a JSON object in field order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal


@dataclass
class NetConfig:
    num_classes: int = 4
    width: int = 16  # channels of the first block; doubled per block up to 8x
    blocks: int = 5
    convs_per_block: int = 2
    reduction: int = 8
    dropout: float = 0.3
    stem_stride: int = 1  # stride of the first convolution: 2 halves the cost of the full-resolution block

    @property
    def channels(self) -> list[int]:
        """Channels of each block: the width, doubled per block up to eight times it."""
        return [min(self.width * 2**index, self.width * 8) for index in range(self.blocks)]

    @property
    def block_names(self) -> list[str]:
        return [f"block {index + 1} ({channels} channels)" for index, channels in enumerate(self.channels)]

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """The name and shape of every tensor in the network's state dict (``SECNN(self).state_dict()``), known
        without torch so that a weights file is checked on load."""
        shapes: dict[str, tuple[int, ...]] = {}
        previous = 3
        for index, channels in enumerate(self.channels):
            for conv in range(self.convs_per_block):
                prefix = f"blocks.{index}.convs."
                shapes[f"{prefix}{3 * conv}.weight"] = (channels, previous if conv == 0 else channels, 3, 3)
                for part in ("weight", "bias", "running_mean", "running_var"):
                    shapes[f"{prefix}{3 * conv + 1}.{part}"] = (channels,)
                shapes[f"{prefix}{3 * conv + 1}.num_batches_tracked"] = ()
            hidden = max(4, channels // self.reduction)
            se = f"blocks.{index}.se."
            shapes |= {f"{se}fc1.weight": (hidden, channels), f"{se}fc1.bias": (hidden,)}
            shapes |= {f"{se}fc2.weight": (channels, hidden), f"{se}fc2.bias": (channels,)}
            previous = channels
        shapes |= {"head.weight": (self.num_classes, previous), "head.bias": (self.num_classes,)}
        return shapes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetConfig:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


@dataclass(eq=False)  # the mapping's equality: equal to a dict with the same items
class SECNNOptions(MutableMapping[str, Any]):
    # network
    image_size: int = 96
    width: int = 16
    blocks: int = 5
    convs_per_block: int = 2
    reduction: int = 8
    dropout: float = 0.3
    stem_stride: int = 1
    # optimisation
    epochs: int = 30
    lr: float = 2e-3
    weight_decay: float = 5e-4
    batch_size: int = 32
    patience: int = 8
    ema_decay: float = 0.995
    label_smoothing: float = 0.0
    balance: Literal["loss", "sampler", "none"] = "loss"
    seed: int = 0
    device: str = "auto"
    # CPU threads while training (0: leave torch's setting). On a busy machine 1 thread beats 2 by far: the
    # small per-image operations spend their time waiting for each other.
    threads: int = 0
    # Worker processes augmenting batches ahead of a GPU (0: augment in the training loop; the CPU-only setting,
    # where the cores are busy with the network anyway).
    loader_workers: int = 0
    # validation part inside fit: last capture blocks per class ("blocks") or random groups ("random")
    val_fraction: float = 0.15
    val_split: Literal["blocks", "random"] = "blocks"
    # input: per-image channel standardisation removes global stain tint; the corner holds the scale-bar label
    normalise: Literal["image", "fixed"] = "image"
    mask_corner: bool = True
    # Decode JPEG files at a reduced scale (libjpeg's DCT scaling, 1/2 to 1/8, keeping at least image_size) before
    # the resize, in training and in use alike: faster, and it drops the finest DCT coefficients, where the JPEG
    # compression of different sessions differs. Other formats are decoded at full size.
    jpeg_draft: bool = False
    # Train on random crops of this size from the image_size input (0: whole images); prediction always sees the
    # whole image. Gives the network finer detail (larger image_size) at the training cost of the crop size.
    train_crop: int = 0
    # augmentation strengths
    scale_aug: float = 0.5
    colour_jitter: float = 0.2
    hue_jitter: float = 0.04
    stain_jitter: float = 0.15
    # Per-channel brightness gain (lamp, white balance), off by default: it made the network robust to such drift
    # but cost 2-3 points on the held-out blocks (gain96 and gainlow96 on the model card), so it is not shipped.
    gain_jitter: float = 0.0
    # Probability of re-staining a training image with another training image's stain (optical-density mean and
    # spread per channel, Reinhard-style), whatever its class: teaches the network to classify without the stain.
    stain_transfer: float = 0.0
    grey_prob: float = 0.25
    blur_prob: float = 0.2
    # test-time augmentation: average logits over the 8 flips/rotations
    tta: bool = False
    # review policy fitting on the validation part
    ood_quantile: float = 0.99
    ood_margin: float = 1.0
    # Shares of validation images flagged: low confidence overall, and malignant calls with the highest Benign
    # probability (on later capture blocks these caught confident hematogone errors that a higher confidence
    # budget missed; training/results and the model card have the figures).
    review_budget: float = 0.01
    benign_alert_budget: float = 0.02

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SECNNOptions:
        """The defaults with ``options`` over them (values kept as given); an unknown name is a ValueError."""
        unknown = sorted(set(options) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown SE-CNN option(s): {', '.join(unknown)}")
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def net_config(self) -> NetConfig:
        return NetConfig(
            4, self.width, self.blocks, self.convs_per_block, self.reduction, self.dropout, self.stem_stride
        )

    # ---- mapping access, by option name -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        if name not in FIELDS:
            raise KeyError(name)
        return getattr(self, name)

    def __setitem__(self, name: str, value: Any) -> None:
        if name not in FIELDS:
            raise KeyError(f"unknown SE-CNN option {name!r}")
        setattr(self, name, value)

    def __delitem__(self, name: str) -> None:
        raise TypeError("SE-CNN options cannot be removed, only changed")

    def __iter__(self) -> Iterator[str]:
        return iter(FIELDS)

    def __len__(self) -> int:
        return len(FIELDS)


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(SECNNOptions))
# The default options as a plain dict (the training scripts and the model card read it).
DEFAULTS: dict[str, Any] = SECNNOptions().to_dict()

# The recipe of the shipped default model: what `training/` trains it with and retraining starts from (the
# options over the defaults above).
RECIPE: dict[str, Any] = {
    "image_size": 96,
    "width": 16,
    "blocks": 5,
    "convs_per_block": 1,
    "epochs": 30,
    "lr": 2e-3,
    "batch_size": 32,
    "patience": 8,
    # Colour: the network sees each image's own stain (fixed normalisation), but a tenth of the training images are
    # re-stained with another image's stain, whatever its class, and 15% are shown in grey, so it must also classify
    # without colour. JPEGs are decoded at half scale (DCT scaling) before the resize to 96 px: faster, and no
    # less accurate. Held-out blocks, five seeds: 97.1-99.3%, mean 98.1% (grey-scale 94.2-96.6%, stain-normalised
    # 95.4-96.6%); the model card compares the colour handlings, decodings and input sizes that were tried.
    "normalise": "fixed",
    "stain_transfer": 0.1,
    "jpeg_draft": True,
    "grey_prob": 0.15,
    "stain_jitter": 0.0,
    "colour_jitter": 0.1,
    "hue_jitter": 0.0,
    "mask_corner": True,
    "seed": 0,
}

# Sizes a model folder may ask for (secnn.json): a crafted width or input size would otherwise take loading or a
# batch to the machine's memory limit. The shipped networks are 96 px and width 16 (48 px, width 12).
OPTION_BOUNDS: dict[str, tuple[float, float]] = {
    "image_size": (16, 384),
    "width": (1, 64),
    "blocks": (1, 8),
    "convs_per_block": (1, 4),
    "reduction": (1, 64),
    "stem_stride": (1, 4),
    "batch_size": (1, 1024),
    "train_crop": (0, 384),
    "threads": (0, 256),
    "loader_workers": (0, 64),
}
# Activation memory grows with width x image_size^2: at most seven times the shipped network's per image.
MAX_WIDTH_PIXELS = 16 * 256 * 256
