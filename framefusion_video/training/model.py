"""Network builders: the U-Net generator that restores aligned face crops, and the PatchGAN critic.

Both are plain Keras functional models made only of built-in layers, so the generator saves to
and loads from a ``.keras`` file without custom objects. Images enter and leave the generator as
float32 RGB in [0, 1]; internally it predicts a residual that is added to its input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape of the U-Net. The defaults are sized for ~60 crops/s on a 2-core CPU at 128 px."""

    crop_size: int = 128
    # Channels at full, 1/2, 1/4, 1/8 and 1/16 resolution.
    widths: tuple[int, ...] = (16, 32, 48, 96, 128)
    # Inverted residual blocks after each downsampling (index 0 = full resolution).
    blocks: tuple[int, ...] = (0, 1, 2, 2, 3)
    expansion: int = 3
    # Per-face strength: the residual is scaled by a learned gain in [0, 1] (0 leaves the face bit-exact).
    gate: bool = True

    def __post_init__(self) -> None:
        levels = len(self.widths)
        if levels != len(self.blocks):
            raise ValueError(f"widths has {levels} levels and blocks {len(self.blocks)}: give one number per level to each")
        if min(self.widths) < 1 or min(self.blocks) < 0:
            raise ValueError("every level needs at least one channel and no negative number of blocks")
        most = (self.crop_size & -self.crop_size).bit_length()  # halvings of the crop, plus the full-size level
        if levels > most:
            raise ValueError(f"{levels} levels halve a {self.crop_size} px crop too often: give at most {most}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GeneratorConfig":
        data = {"gate": False, **data}  # configurations saved before the gate existed had none
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class DiscriminatorConfig:
    """PatchGAN critic: each output logit judges one ~40 px patch of a 128 px crop."""

    crop_size: int = 128
    widths: tuple[int, ...] = (32, 64, 128, 192)


#: Units of the gate's hidden layer, and the factor between its logit layer and the gain.
GATE_HIDDEN = 32
GATE_LOGIT_SCALE = 4.0

# He initialisation keeps the activations' scale through ReLU layers; with Keras' default (Glorot)
# the deep levels of this narrow U-Net start with activations ~1e-4 of the input's and barely learn.
_HE = "he_normal"


def _act(name: str):
    """Leaky ReLU: with plain ReLU and no normalisation, one bad batch can kill every unit of a
    narrow layer (a unit that outputs 0 gets no gradient), and the U-Net then collapses to the
    identity; the leaky slope keeps a gradient through every unit."""
    from keras import layers

    return layers.LeakyReLU(0.1, name=name)


def _depthwise_init():
    """He initialisation for a 3x3 depthwise kernel: fan-in is its 9 taps (Keras would count 9 x C)."""
    import keras

    return keras.initializers.RandomNormal(stddev=(2.0 / 9.0) ** 0.5)


def _inverted_residual(x, channels: int, expansion: int, name: str):
    """MobileNetV2 block (1x1 expand -> 3x3 depthwise -> 1x1 project) with an identity skip."""
    from keras import layers

    inp = x
    x = layers.Conv2D(channels * expansion, 1, kernel_initializer=_HE, name=f"{name}_expand")(x)
    x = _act(name=f"{name}_expand_relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", depthwise_initializer=_depthwise_init(), name=f"{name}_dw")(x)
    x = _act(name=f"{name}_dw_relu")(x)
    x = layers.Conv2D(channels, 1, kernel_initializer="zeros", name=f"{name}_project")(x)
    return layers.Add(name=f"{name}_add")([inp, x])


def _separable(x, channels: int, name: str, strides: int = 1):
    """Depthwise 3x3 then pointwise 1x1 with ReLU: a cheap full-size convolution."""
    from keras import layers

    x = layers.DepthwiseConv2D(3, strides=strides, padding="same", depthwise_initializer=_depthwise_init(), name=f"{name}_dw")(x)
    x = layers.Conv2D(channels, 1, kernel_initializer=_HE, name=f"{name}_pw")(x)
    return _act(name=f"{name}_relu")(x)


def _gate(deep, fine):
    """Per-face gain of the residual in [0, 1], shape (N, 1, 1, 1), from the pooled deepest and
    final features: how much of its restoration the network applies to this face.

    Starts at exactly 1 (a gated network computes what the same network without a gate does, so
    ungated weights can be fine-tuned with it). At 0 the face comes out bit-identical to the input,
    which a residual of small values never does; ``gating.fit_gate`` fits it as a steep step:
    "restore this face" or "leave it alone".
    """
    import keras
    from keras import layers

    pooled = layers.Concatenate(name="gate_features")([layers.GlobalAveragePooling2D(name="gate_pool_deep")(deep),
                                                       layers.GlobalAveragePooling2D(name="gate_pool_fine")(fine)])
    h = layers.Dense(GATE_HIDDEN, kernel_initializer=_HE, name="gate_hidden")(pooled)
    h = _act(name="gate_hidden_relu")(h)
    # x4 makes the gain 4x as mobile in a training run (it may have to travel from 1 to 0).
    z = layers.Dense(1, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(0.25), name="gate_logit")(h)
    z = layers.Rescaling(GATE_LOGIT_SCALE, name="gate_scale")(z)
    g = layers.ReLU(max_value=1.0, name="gate_relu")(z)
    return layers.Reshape((1, 1, 1), name="gate")(g)


def build_generator(config: GeneratorConfig = GeneratorConfig()):
    """The U-Net: (N, S, S, 3) float32 [0, 1] -> (N, S, S, 3) float32 [0, 1].

    Encoder: strided separable convolutions with inverted residual blocks; decoder: bilinear
    upsampling, concatenation with the encoder skip, a separable convolution and the same blocks.
    The output is ``clip(input + residual, 0, 1)``: an untrained network starts close to identity.
    """
    import keras
    from keras import layers

    levels = len(config.widths)  # GeneratorConfig has checked the shape

    inp = keras.Input((config.crop_size, config.crop_size, 3), name="damaged")
    x = layers.Rescaling(2.0, offset=-1.0, name="centre")(inp)
    x = layers.Conv2D(config.widths[0], 3, padding="same", kernel_initializer=_HE, name="stem")(x)
    x = _act(name="stem_relu")(x)
    skips = []
    for level, (width, n_blocks) in enumerate(zip(config.widths, config.blocks)):
        if level > 0:
            skips.append(x)
            x = _separable(x, width, f"down{level}", strides=2)  # S / 2**level
        for b in range(n_blocks):
            x = _inverted_residual(x, width, config.expansion, f"enc{level}_{b}")
    deep = x
    for level in range(levels - 2, -1, -1):
        width = config.widths[level]
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"up{level}")(x)  # S / 2**level
        x = layers.Concatenate(name=f"cat{level}")([x, skips[level]])
        x = _separable(x, width, f"fuse{level}")
        for b in range(config.blocks[level]):
            x = _inverted_residual(x, width, config.expansion, f"dec{level}_{b}")
    residual = layers.Conv2D(3, 3, padding="same", kernel_initializer="zeros", name="residual")(x)
    if config.gate:
        residual = layers.Multiply(name="gated_residual")([residual, _gate(deep, x)])
    out = layers.Add(name="add_input")([inp, residual])
    out = layers.ReLU(max_value=1.0, name="clip")(out)
    return keras.Model(inp, out, name="ffv_generator")


def generator_config_of(model) -> GeneratorConfig:
    """The :class:`GeneratorConfig` a generator built by :func:`build_generator` was built with,
    read from its layers (a ``.keras`` file holds the layers, not our configuration)."""
    names = {layer.name for layer in model.layers}
    crop_size = int(model.input_shape[1])
    widths = [int(model.get_layer("stem").filters)]
    while f"down{len(widths)}_pw" in names:
        widths.append(int(model.get_layer(f"down{len(widths)}_pw").filters))
    blocks = []
    for level in range(len(widths)):
        count = 0
        while f"enc{level}_{count}_expand" in names:
            count += 1
        blocks.append(count)
    expansions = [model.get_layer(f"enc{lv}_0_expand").filters // widths[lv] for lv in range(len(widths)) if blocks[lv]]
    return GeneratorConfig(crop_size=crop_size, widths=tuple(widths), blocks=tuple(blocks),
                           expansion=int(expansions[0]) if expansions else GeneratorConfig.expansion,
                           gate="gate_logit" in names)


def build_discriminator(config: DiscriminatorConfig = DiscriminatorConfig()):
    """PatchGAN: (N, S, S, 3) float32 [0, 1] -> (N, S/8, S/8, 1) real/fake logits.

    No normalisation layers: the R1 gradient penalty applied in training keeps it stable, and
    per-sample gradients are then well defined.
    """
    import keras
    from keras import layers

    inp = keras.Input((config.crop_size, config.crop_size, 3), name="image")
    x = inp
    for i, width in enumerate(config.widths):
        strides = 2 if i < len(config.widths) - 1 else 1
        x = layers.Conv2D(width, 4, strides=strides, padding="same", name=f"conv{i}")(x)
        x = layers.LeakyReLU(0.2, name=f"lrelu{i}")(x)
    out = layers.Conv2D(1, 3, padding="same", name="logits")(x)
    return keras.Model(inp, out, name="ffv_patchgan")


def count_conv_flops(model) -> float:
    """Multiply-adds x2 of the convolutions of one pass of ``model`` on one image (any Keras
    model: the U-Net, SPAN); the cheap element-wise layers are not counted."""
    total = 0.0
    for layer in model.layers:
        cls = type(layer).__name__
        if cls not in ("Conv2D", "DepthwiseConv2D"):
            continue
        out_shape = layer.output.shape
        h, w, c_out = out_shape[1], out_shape[2], out_shape[3]
        k = layer.kernel_size[0] * layer.kernel_size[1]
        c_in = layer.input.shape[-1]
        per_pixel = k * c_in * c_out if cls == "Conv2D" else k * c_out
        total += 2.0 * h * w * per_pixel
    return total

