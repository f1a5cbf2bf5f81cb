"""SPAN, the efficient super-resolution network (Wan et al., "Swift Parameter-free Attention
Network", NTIRE 2024 efficient SR), as a Keras model. Its official weights are read from ncnn files
by ``scripts/span_ncnn.py`` (``scripts/convert_span.py``), outside the package.

The graph (``build_span``), as SPAN's reference implementation and its ncnn export define it:

- normalise: ``(x - rgb_mean) * rgb_range`` (the network expects RGB in [0, 1], works on 0-255);
- ``conv_1``: 3x3, 3 -> C;
- ``blocks`` blocks of three 3x3 C -> C convolutions (SiLU after the first two) with parameter-free
  attention: ``block(x) = (c3 + x) * (sigmoid(c3) - 0.5)``;
- ``conv_2``: 3x3 on the last block's output;
- concat of ``conv_1``, ``conv_2``, the first block's output and the last block's first activation
  (4·C channels), ``conv_cat`` 1x1 -> C, ``upsampler`` 3x3 -> 3·r², pixel shuffle (×r);
- no de-normalisation: the output is RGB in [0, 1] (clipped here).

Pixel shuffle: PyTorch and ncnn order the 3·r² channels as c·r² + i·r + j (colour c, sub-pixel row
i, column j); ``tf.nn.depth_to_space`` and :func:`pixel_shuffle` here as (i·r + j)·3 + c. Weights in
the PyTorch order go through :func:`pixel_shuffle_permutation` on the upsampler's output channels.

A same-size restorer around ×4 SPAN (``scale`` 1, ``unshuffle`` 4): SPAN runs on the crop's 4x4
area means (32 px for a 128 px crop) and gives a ×4 estimate learnt from faces, blind to fine detail
but robust to noise and compression; a small full-resolution head sees the crop and that estimate
side by side and outputs a correction to the crop (zero at the start: the network starts as the
identity). Started from ×4 weights, every SPAN layer keeps its name and weights.

Only built-in Keras layers: the model saves to ``.keras`` and loads with ``safe_mode=True`` and no
custom objects, and converts with ``inference.export_tflite``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

#: Upscaling factors of SPAN's released weights.
SCALES = (2, 4)
#: ``SpanConfig.scale`` of a same-size restorer on SPAN's trunk.
RESTORER = 1
#: Factor on a restorer's correction (see ``build_span``).
RESIDUAL_SCALE = 0.02
#: Convolutions of a restorer's full-resolution head (the last one gives the correction).
HEAD_LAYERS = ("head_1", "head_2", "residual")
#: SPAN's DIV2K RGB mean (the value in its official weights' ncnn export).
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


@dataclass(frozen=True)
class SpanConfig:
    """Shape of a SPAN network: (N, input_size, input_size, 3) -> (N, output_size, output_size, 3).

    ``input_size`` None: a network for inputs of any height and width (what ``ffv export`` writes:
    ``ffv restore`` gives it a window sized to each face), a restorer's sides being multiples of
    ``unshuffle``."""

    scale: int = 4
    channels: int = 48
    blocks: int = 6
    #: Side of the (small) input crop; the output is ``scale`` times larger (32 -> 128 at ×4).
    input_size: int | None = 32
    rgb_mean: tuple[float, float, float] = DIV2K_RGB_MEAN
    rgb_range: float = 255.0
    #: A restorer's SPAN runs ×``unshuffle`` on the crop reduced that much (1 for super-resolution).
    unshuffle: int = 1
    #: Channels of a restorer's full-resolution head.
    head_channels: int = 24

    def __post_init__(self) -> None:
        if self.scale not in (*SCALES, RESTORER):
            raise ValueError(f"scale {self.scale}: SPAN's weights exist for {', '.join(map(str, SCALES))}, "
                             f"and {RESTORER} is a same-size restorer")
        if self.channels < 1 or self.blocks < 1 or (self.input_size or 1) < 1 or self.unshuffle < 1:
            raise ValueError("channels, blocks, input_size and unshuffle must be at least 1")
        if (self.scale == RESTORER) != (self.unshuffle > 1):
            raise ValueError("a same-size restorer (scale 1) needs unshuffle > 1, super-resolution unshuffle 1")
        if (self.input_size or 0) % self.unshuffle:
            raise ValueError(f"input_size {self.input_size} is not a multiple of unshuffle {self.unshuffle}")
        if len(self.rgb_mean) != 3:
            raise ValueError(f"rgb_mean needs one value per RGB channel, got {self.rgb_mean}")

    @property
    def output_size(self) -> int | None:
        return None if self.input_size is None else self.scale * self.input_size

    @property
    def is_restorer(self) -> bool:
        return self.scale == RESTORER

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SpanConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def conv_layer_names(config: SpanConfig) -> list[str]:
    """The Keras model's convolutions in the order of SPAN's reference code and its ncnn export."""
    names = ["conv_1"]
    for b in range(1, config.blocks + 1):
        names += [f"block_{b}_c1", f"block_{b}_c2", f"block_{b}_c3"]
    return names + ["conv_2", "conv_cat", "upsampler"]


def pixel_shuffle_permutation(channels: int, scale: int) -> np.ndarray:
    """``perm`` such that output channel k of a depth-to-space-ordered convolution is channel
    ``perm[k]`` of the same convolution in PyTorch's pixel-shuffle order.

    Keras channel k = (i·r + j)·C + c holds PyTorch's channel c·r² + i·r + j (C = ``channels``,
    r = ``scale``); apply it as ``kernel[..., perm]``, ``bias[perm]``.
    """
    r = scale
    i, j, c = np.meshgrid(np.arange(r), np.arange(r), np.arange(channels), indexing="ij")  # k order
    return (c * r * r + i * r + j).reshape(-1)


def shuffle_kernel(channels: int, scale: int) -> np.ndarray:
    """The kernel (r, r, C, r²·C) of a stride-r transposed convolution that is exactly
    :func:`pixel_shuffle`: input channel (i·r + j)·C + c goes to output channel c at (i, j)."""
    r = scale
    kernel = np.zeros((r, r, channels, r * r * channels), np.float32)
    for i in range(r):
        for j in range(r):
            for c in range(channels):
                kernel[i, j, c, (i * r + j) * channels + c] = 1.0
    return kernel


def pixel_shuffle(x, scale: int, name: str = "pixel_shuffle"):
    """(N, H, W, r²·C) -> (N, r·H, r·W, C), channel (i·r + j)·C + c to pixel (r·h + i, r·w + j)
    (``tf.nn.depth_to_space``'s order), with built-in layers only: Reshape and Permute for a fixed
    H and W (what training builds), else a transposed convolution with the fixed
    :func:`shuffle_kernel` (no layer of Keras reshapes a tensor of unknown size)."""
    from keras import layers

    _, h, w, depth = x.shape
    c = depth // (scale * scale)
    if h is None or w is None:
        shuffle = layers.Conv2DTranspose(c, scale, strides=scale, use_bias=False, trainable=False, name=name)
        out = shuffle(x)
        shuffle.set_weights([shuffle_kernel(c, scale)])
        return out
    x = layers.Reshape((h, w, scale, scale * c), name=f"{name}_rows")(x)  # (H, W, i, j·C + c)
    x = layers.Permute((1, 3, 2, 4), name=f"{name}_interleave")(x)  # (H, i, W, j·C + c)
    return layers.Reshape((h * scale, w * scale, c), name=name)(x)  # (r·H, r·W, C)


def build_span(config: SpanConfig = SpanConfig()):
    """SPAN: float32 RGB [0, 1] (N, s, s, 3) -> (N, r·s, r·s, 3) in [0, 1] (s = ``input_size``);
    a restorer (r = 1): SPAN ×``unshuffle`` on the crop's area means, then the head (module doc)."""
    import keras
    from keras import layers

    c, u = config.channels, config.unshuffle

    def conv(x, filters: int, name: str, kernel: int = 3, initializer: str = "glorot_uniform"):
        return layers.Conv2D(filters, kernel, padding="same", name=name, kernel_initializer=initializer)(x)

    inp = keras.Input((config.input_size, config.input_size, 3), name="crop" if config.is_restorer else "small")
    small = layers.AveragePooling2D(u, name="area_means")(inp) if u > 1 else inp
    x = layers.Rescaling(config.rgb_range, offset=[-config.rgb_range * m for m in config.rgb_mean],
                         name="normalise")(small)
    feature = conv(x, c, "conv_1")
    out, first, last_act = feature, None, None
    for b in range(1, config.blocks + 1):
        act1 = layers.Activation("silu", name=f"block_{b}_act1")(conv(out, c, f"block_{b}_c1"))
        act2 = layers.Activation("silu", name=f"block_{b}_act2")(conv(act1, c, f"block_{b}_c2"))
        c3 = conv(act2, c, f"block_{b}_c3")
        attention = layers.Activation("sigmoid", name=f"block_{b}_sigmoid")(c3)
        attention = layers.Rescaling(1.0, offset=-0.5, name=f"block_{b}_attention")(attention)
        out = layers.Multiply(name=f"block_{b}")([layers.Add(name=f"block_{b}_skip")([c3, out]), attention])
        first = out if b == 1 else first
        last_act = act1
    out = conv(out, c, "conv_2")
    out = layers.Concatenate(name="concat")([feature, out, first, last_act])  # 4·C channels
    out = conv(out, c, "conv_cat", kernel=1)
    r = config.scale * u
    out = pixel_shuffle(conv(out, 3 * r * r, "upsampler"), r)  # (r·s, r·s, 3)
    if config.is_restorer:
        h = layers.Concatenate(name="crop_and_estimate")([inp, out])
        for name in HEAD_LAYERS[:-1]:
            h = layers.Activation("silu", name=f"{name}_act")(conv(h, config.head_channels, name))
        # Adam first moves every weight by about its rate, whatever the gradient's size: the scale
        # keeps the first moves of the correction small.
        h = layers.Rescaling(RESIDUAL_SCALE, name="residual_scale")(conv(h, 3, HEAD_LAYERS[-1], initializer="zeros"))
        out = layers.Add(name="restored")([inp, h])
    out = layers.ReLU(max_value=1.0, name="clip")(out)
    return keras.Model(inp, out, name="span_restorer" if config.is_restorer else f"span_x{config.scale}")


def resize_span(model, config: SpanConfig, input_size: int | None):
    """The same network and weights for ``input_size`` px inputs (the graph's shapes are fixed), or
    for inputs of any size (None). Weights are copied by layer name: the
    fixed and the sizeless graphs differ only in the pixel shuffle, which has none to learn."""
    resized = build_span(replace(config, input_size=input_size))
    for layer in resized.layers:
        if layer.weights and layer.name != "pixel_shuffle":
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return resized
