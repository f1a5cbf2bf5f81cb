"""SPAN's official weights from ncnn model files (``.param`` text graph and ``.bin`` weights), read
with numpy alone, into the Keras network of ``framefusion_video.training.span``.

Only what ``scripts/convert_span.py`` needs to convert the pretrained weights; nothing of it ships
in the package, and no ncnn is needed at run time.
The ``.bin`` file is the weights of the ``.param`` layers concatenated in graph order, each layer
reading its own arrays (ncnn ``ModelBinFromDataReader``):

- a *tagged* array (a convolution's weights) starts with a 4-byte little-endian tag: 0x01306B47
  float16 values (padded to a multiple of 4 bytes), 0x0002C056 or 0 float32 values; other tags
  (int8, quantisation tables) are not supported here;
- a *raw* array (a convolution's bias, a ``MemoryData`` constant) is float32 values, no tag.

:func:`read_weights` reads every layer and raises unless the arrays cover the file exactly.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from framefusion_video.training.span import SpanConfig, build_span, conv_layer_names, pixel_shuffle_permutation

PARAM_MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0x0002C056
#: Layer types that read nothing from the ``.bin`` file (with the parameters used in SPAN's graphs).
WEIGHTLESS = frozenset({"Input", "Split", "BinaryOp", "Swish", "Sigmoid", "ReLU", "Concat", "PixelShuffle", "Eltwise"})
# ncnn BinaryOp op_type values
OP_ADD, OP_SUB, OP_MUL = 0, 1, 2


@dataclass(frozen=True)
class NcnnLayer:
    """One line of a ``.param`` file: ``params`` maps ncnn's integer keys to ints, floats or tuples
    (array parameters, keys ≤ -23300 in the file, are stored under their plain id)."""

    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: Mapping[int, int | float | tuple] = field(default_factory=dict)

    def param(self, key: int, default: int | float | tuple = 0) -> int | float | tuple:
        return self.params.get(key, default)


def _value(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse_param(text: str) -> list[NcnnLayer]:
    """The layers of a ``.param`` file's text, in file order; ValueError if it is not one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or lines[0] != str(PARAM_MAGIC):
        raise ValueError(f"not an ncnn .param file (first line {lines[0] if lines else ''!r}, expected {PARAM_MAGIC})")
    n_layers, _n_blobs = (int(v) for v in lines[1].split())
    layers = []
    for line in lines[2:]:
        parts = line.split()
        kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
        bottoms = tuple(parts[4:4 + n_in])
        tops = tuple(parts[4 + n_in:4 + n_in + n_out])
        params: dict[int, int | float | tuple] = {}
        for item in parts[4 + n_in + n_out:]:
            key_text, value_text = item.split("=", 1)
            key = int(key_text)
            if key <= -23300:  # an array: "count,v1,v2,..."
                values = value_text.split(",")
                params[-key - 23300] = tuple(_value(v) for v in values[1:])
            else:
                params[key] = _value(value_text)
        layers.append(NcnnLayer(kind, name, bottoms, tops, params))
    if len(layers) != n_layers:
        raise ValueError(f"the .param header announces {n_layers} layers, the file has {len(layers)}")
    return layers


def _align4(n: int) -> int:
    return (n + 3) & ~3


class _Reader:
    """Sequential reads from the ``.bin`` bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def _take(self, nbytes: int, what: str) -> int:
        start = self.offset
        if start + nbytes > len(self.data):
            raise ValueError(f"the .bin file ends at byte {len(self.data)}, inside {what} ({nbytes} bytes from {start})")
        self.offset += nbytes
        return start

    def raw(self, count: int, what: str) -> np.ndarray:
        """``count`` float32 values, untagged."""
        start = self._take(4 * count, what)
        return np.frombuffer(self.data, "<f4", count, start).astype(np.float32)

    def tagged(self, count: int, what: str) -> np.ndarray:
        """``count`` values behind a 4-byte storage tag, as float32."""
        (tag,) = struct.unpack_from("<I", self.data, self._take(4, f"the tag of {what}"))
        if tag == TAG_FP16:
            start = self._take(_align4(2 * count), what)
            return np.frombuffer(self.data, "<f2", count, start).astype(np.float32)
        if tag in (TAG_FP32, 0):
            return self.raw(count, what)
        raise ValueError(f"{what}: unsupported ncnn weight storage tag 0x{tag:08x} (int8 or quantised weights)")


def read_weights(layers: Sequence[NcnnLayer], data: bytes) -> dict[str, tuple[np.ndarray, ...]]:
    """The arrays of each layer that has some, by layer name, read from the ``.bin`` bytes.

    - ``Convolution``: (kernel float32 (out, in, kh, kw), bias float32 (out,)) or (kernel,) when
      the layer has no bias;
    - ``MemoryData``: (constant float32 (c, h, w),) (or (d, c, h, w) for 4-D constants).

    Raises:
        ValueError: a layer type whose weights are not known here, a convolution with options this
            reader does not handle (int8, fused activation, dynamic weights), or arrays that do not
            account for every byte of ``data``.
    """
    reader = _Reader(data)
    out: dict[str, tuple[np.ndarray, ...]] = {}
    for layer in layers:
        if layer.type in WEIGHTLESS:
            continue
        if layer.type == "MemoryData":
            w, h, c, d = (int(layer.param(k, 0)) for k in (0, 1, 2, 11))
            shape = tuple(s for s in (d, c, h) if s) + (w,)
            out[layer.name] = (reader.raw(int(np.prod(shape)), layer.name).reshape(shape),)
        elif layer.type == "Convolution":
            for key, what in ((8, "int8 scales"), (9, "a fused activation"), (19, "dynamic weights")):
                if layer.param(key, 0):
                    raise ValueError(f"{layer.name}: convolutions with {what} are not supported")
            n_out, kw = int(layer.param(0)), int(layer.param(1))
            kh = int(layer.param(11, kw))
            size = int(layer.param(6))
            n_in, rest = divmod(size, n_out * kh * kw)
            if rest or n_in < 1:
                raise ValueError(f"{layer.name}: {size} weights do not fill {n_out} outputs of {kh}x{kw}")
            kernel = reader.tagged(size, f"the weights of {layer.name}").reshape(n_out, n_in, kh, kw)
            bias = (reader.raw(n_out, f"the bias of {layer.name}"),) if layer.param(5, 0) else ()
            out[layer.name] = (kernel, *bias)
        else:
            raise ValueError(f"{layer.name}: layer type {layer.type} is not known to this reader")
    if reader.offset != len(data):
        raise ValueError(f"the layers read {reader.offset} bytes of a {len(data)}-byte .bin file")
    return out


# --------------------------------------------------------------------------------------------------
# SPAN from an ncnn graph and its weights
# --------------------------------------------------------------------------------------------------


def _single(layers: Sequence[NcnnLayer], kind: str) -> NcnnLayer:
    found = [layer for layer in layers if layer.type == kind]
    if len(found) != 1:
        raise ValueError(f"expected one {kind} layer in a SPAN graph, found {len(found)}")
    return found[0]


def _source(layers: Sequence[NcnnLayer], blob: str) -> NcnnLayer:
    """The layer that computes ``blob``, looking through ``Split`` copies."""
    for layer in layers:
        if blob in layer.tops:
            return _source(layers, layer.bottoms[0]) if layer.type == "Split" else layer
    raise ValueError(f"no layer produces blob {blob!r}")


def span_config_from_ncnn(layers: Sequence[NcnnLayer], weights: Mapping[str, tuple[np.ndarray, ...]],
                          input_size: int) -> SpanConfig:
    """The :class:`SpanConfig` of an ncnn SPAN graph, after checking that the graph is SPAN's:
    input normalisation, the convolution shapes, the block structure and the concat's inputs."""
    convs = [layer for layer in layers if layer.type == "Convolution"]
    blocks = sum(layer.type == "Sigmoid" for layer in layers)
    scale = int(_single(layers, "PixelShuffle").param(0))
    if _single(layers, "PixelShuffle").param(1, 0) != 0:
        raise ValueError("only PixelShuffle mode 0 (PyTorch's channel order) is handled")
    channels = int(convs[0].param(0)) if convs else 0
    mean = weights[_single(layers, "MemoryData").name][0].reshape(-1)
    scalars = [layer for layer in layers if layer.type == "BinaryOp" and layer.param(1, 0) == 1]
    if not scalars or scalars[0].param(0) != OP_MUL:
        raise ValueError("expected the input normalisation (x - mean) * range first in the graph")
    subs = [layer for layer in layers if layer.type == "BinaryOp" and layer.param(0) == OP_SUB
            and layer.param(1, 0) == 0]
    if len(subs) != 1 or _source(layers, subs[0].bottoms[0]).type != "Input" \
            or _source(layers, subs[0].bottoms[1]).type != "MemoryData":
        raise ValueError("expected one subtraction of a MemoryData mean from the input")
    config = SpanConfig(scale=scale, channels=channels, blocks=blocks, input_size=input_size,
                        rgb_mean=tuple(float(m) for m in mean), rgb_range=float(scalars[0].param(2)))

    expected = [(channels, 3, 3)] + [(channels, channels, 3)] * (3 * blocks + 1) + \
               [(channels, 4 * channels, 1), (3 * scale * scale, channels, 3)]
    found = [tuple(weights[layer.name][0].shape[:3]) for layer in convs]
    if found != expected:
        raise ValueError(f"convolution shapes (out, in, k) {found} are not SPAN's {expected}")
    for layer in convs:
        k = int(layer.param(1))
        if (layer.param(2, 1), layer.param(3, 1), layer.param(4, 0), layer.param(5, 0)) != (1, 1, (k - 1) // 2, 1):
            raise ValueError(f"{layer.name}: expected stride 1, dilation 1, 'same' padding and a bias")
    if sum(layer.type == "Swish" for layer in layers) != 2 * blocks:
        raise ValueError(f"expected two SiLU (Swish) layers in each of the {blocks} blocks")
    products = [layer for layer in layers if layer.type == "BinaryOp" and layer.param(0) == OP_MUL
                and layer.param(1, 0) == 0]  # each block's (c3 + x) * attention
    swishes = [layer for layer in layers if layer.type == "Swish"]
    concat = _single(layers, "Concat")
    sources = [_source(layers, blob).name for blob in concat.bottoms]
    want = [convs[0].name, convs[3 * blocks + 1].name, products[0].name, swishes[2 * (blocks - 1)].name]
    if sources != want:
        raise ValueError(f"the concat takes {sources}, SPAN's takes {want}")
    return config


def assign_ncnn_weights(model, config: SpanConfig, layers: Sequence[NcnnLayer],
                        weights: Mapping[str, tuple[np.ndarray, ...]]) -> None:
    """Copy the ncnn convolutions (in graph order) into ``model`` (built by :func:`build_span`
    from ``config``): (out, in, kh, kw) kernels to Keras' (kh, kw, in, out), and the upsampler's
    output channels from pixel-shuffle to depth-to-space order."""
    convs = [layer for layer in layers if layer.type == "Convolution"]
    names = conv_layer_names(config)
    if len(convs) != len(names):
        raise ValueError(f"{len(convs)} ncnn convolutions for {len(names)} Keras ones")
    for layer, name in zip(convs, names):
        kernel, bias = weights[layer.name]
        kernel = kernel.transpose(2, 3, 1, 0)
        if name == "upsampler":
            perm = pixel_shuffle_permutation(3, config.scale)
            kernel, bias = kernel[..., perm], bias[perm]
        model.get_layer(name).set_weights([np.ascontiguousarray(kernel), np.ascontiguousarray(bias)])


def span_from_ncnn(param_text: str, bin_data: bytes, input_size: int):
    """(Keras model, config) of the SPAN network in an ncnn ``.param`` text and ``.bin`` bytes,
    for ``input_size`` px inputs. Every byte of ``bin_data`` must be read (ValueError otherwise)."""
    layers = parse_param(param_text)
    weights = read_weights(layers, bin_data)
    config = span_config_from_ncnn(layers, weights, input_size)
    model = build_span(config)
    assign_ncnn_weights(model, config, layers, weights)
    return model, config
