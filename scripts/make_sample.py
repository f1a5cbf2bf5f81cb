"""Make the shipped sample clips: damaged videos of a public-domain portrait, with sound.

Usage: .venv/bin/python scripts/make_sample.py samples/astronaut.mp4
       .venv/bin/python scripts/make_sample.py samples/astronaut_small.mp4 --clip small

The source is scikit-image's ``skimage.data.astronaut()`` (NASA's portrait of Eileen Collins,
public domain; it ships inside scikit-image, nothing is downloaded). The portrait is placed on a
blurred extension of itself and filmed by a simulated hand-held camera (slow pan, zoom and
rotation plus shake), so the face moves and changes scale. Each frame is then damaged the way
old or cheap footage is: motion blur, a low capture resolution, sensor noise, and finally strong
H.264 compression. The sound track is synthesised: a short melody over speech-like babble.
Seeded, so reruns give (nearly) the same file; takes well under a minute on two cores.

Two clips (:data:`CLIPS`): ``astronaut`` (720p, a large face the generator finds nothing to fix
in: the clean case) and ``small`` (a small, blurred, noisy face in a 320x180 frame, the damage
users bring: ``make demo`` restores it with ``--upscale 2``).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

log = logging.getLogger("make_sample")

PAD = 320  # background extension around the 512x512 portrait, in source pixels
FACE_CENTRE = (224.0, 118.0)  # between the eyes and the mouth in the source image (MediaPipe)
AUDIO_RATE = 44100


@dataclass(frozen=True)
class ClipSpec:
    """How one sample clip is filmed and damaged.

    Attributes:
        width, height, fps, duration_s: the clip's frames.
        seed: of the one ``np.random.Generator`` that draws the shake, blur, noise and sound.
        zoom: source -> frame scale at the start and the end (the face's size in the frame).
        downscale: the simulated capture resolution is 1/``downscale`` of the frame's.
        min_blur: the least motion blur (frame px): a slow shutter; the camera's motion adds to it.
        crf: x264's CRF of the encode (higher: more compression damage).
        audio_bitrate: of the AAC sound track.
    """

    width: int
    height: int
    fps: int
    duration_s: float
    seed: int
    zoom: tuple[float, float]
    downscale: float
    min_blur: float
    crf: int
    audio_bitrate: str

    @property
    def n_frames(self) -> int:
        return int(round(self.duration_s * self.fps))


#: The sample clips by name. ``astronaut``: the face's detector box grows from about 210 to 245 px.
#: ``small``: about 40 px, filmed at the frame's own low resolution (aliased), motion-blurred,
#: noisy and compressed.
CLIPS = {
    "astronaut": ClipSpec(1280, 720, 25, 4.8, 20240607, (1.9, 2.3), 3.0, 2.0, 37, "96k"),
    "small": ClipSpec(320, 180, 25, 4.0, 20261207, (0.42, 0.48), 1.0, 1.0, 28, "48k"),
}


def make_canvas(portrait: np.ndarray) -> np.ndarray:
    """The portrait (uint8 RGB) on a blurred, mirrored extension of itself, ``PAD`` px each side."""
    extended = cv2.copyMakeBorder(portrait, PAD, PAD, PAD, PAD, cv2.BORDER_REFLECT_101)
    background = cv2.GaussianBlur(extended, (0, 0), 18)
    background = (background.astype(np.float32) * 0.8).astype(np.uint8)  # a slightly darker room
    h, w = portrait.shape[:2]
    alpha = np.zeros(extended.shape[:2], np.float32)
    alpha[PAD + 12 : PAD + h - 12, PAD + 12 : PAD + w - 12] = 1.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), 10)[..., None]
    canvas = alpha * extended.astype(np.float32) + (1.0 - alpha) * background.astype(np.float32)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def _ease(x: float) -> float:
    return 0.5 - 0.5 * math.cos(math.pi * min(max(x, 0.0), 1.0))


def camera_matrix(spec: ClipSpec, t: float, shake: np.ndarray) -> np.ndarray:
    """Canvas -> frame affine (2, 3) of ``spec``'s clip at time ``t`` s: pan, zoom and roll, plus
    hand-held shake.

    ``shake`` is (3, K, 3): for x, y (source px) and roll (degrees), K sinusoids given as
    (amplitude, frequency Hz, phase).
    """
    p = _ease(t / spec.duration_s)
    zoom = spec.zoom[0] + (spec.zoom[1] - spec.zoom[0]) * p
    jitter = [float(np.sum(a * np.sin(2 * np.pi * f * t + ph))) for a, f, ph in (s.T for s in shake)]
    # Look at a point below the face (head and shoulders framing) that pans left to right.
    cx = PAD + FACE_CENTRE[0] - 45.0 + 90.0 * p + jitter[0]
    cy = PAD + FACE_CENTRE[1] + 70.0 - 25.0 * p + jitter[1]
    roll = 3.0 * math.sin(2 * math.pi * t / 6.0) + jitter[2]
    matrix = cv2.getRotationMatrix2D((cx, cy), roll, zoom)
    matrix[:, 2] += np.array([spec.width / 2.0 - cx, spec.height / 2.0 - cy])
    return matrix


def motion_blur_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A normalised line kernel (float32, odd square) of ``length`` px at ``angle_deg``."""
    size = int(math.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    dx, dy = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    half = (length - 1) / 2.0
    p0 = (round((c - dx * half) * 16), round((c - dy * half) * 16))
    p1 = (round((c + dx * half) * 16), round((c + dy * half) * 16))
    cv2.line(kernel, p0, p1, 1.0, 1, cv2.LINE_AA, shift=4)
    return kernel / kernel.sum()


def damage(spec: ClipSpec, frame: np.ndarray, blur_px: float, blur_angle: float,
           rng: np.random.Generator) -> np.ndarray:
    """Motion blur, capture at 1/``spec.downscale`` resolution with sensor noise, and back to size."""
    out = cv2.filter2D(frame, -1, motion_blur_kernel(blur_px, blur_angle), borderType=cv2.BORDER_REFLECT)
    small_size = (round(spec.width / spec.downscale), round(spec.height / spec.downscale))
    small = cv2.resize(out, small_size, interpolation=cv2.INTER_AREA).astype(np.float32)
    small += rng.normal(0.0, 5.0, small.shape[:2] + (1,)).astype(np.float32)  # luma noise
    small += rng.normal(0.0, 3.0, small.shape).astype(np.float32)  # chroma noise
    small = np.clip(small + 0.5, 0, 255).astype(np.uint8)
    return cv2.resize(small, (spec.width, spec.height), interpolation=cv2.INTER_LINEAR)


def synthesise_audio(duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Mono int16 audio: a plucked pentatonic melody over quiet, syllable-paced babble."""
    n = int(round(duration_s * AUDIO_RATE))
    t = np.arange(n) / AUDIO_RATE
    audio = np.zeros(n)
    scale = [0, 2, 4, 7, 9, 12]
    start, note_len = 0.0, 0.4
    while start < duration_s:
        freq = 261.63 * 2 ** (scale[rng.integers(len(scale))] / 12)
        i0, i1 = int(start * AUDIO_RATE), min(int((start + note_len * 1.5) * AUDIO_RATE), n)
        tt = t[i0:i1] - start
        envelope = np.minimum(tt / 0.01, 1.0) * np.exp(-tt / 0.25)
        audio[i0:i1] += envelope * sum(np.sin(2 * np.pi * k * freq * tt) / k**1.5 for k in (1, 2, 3, 4))
        start += note_len
    # Speech-like babble: noise shaped by two moving formant resonances, gated at ~4 syllables/s.
    noise = rng.standard_normal(n)
    babble = np.zeros(n)
    for centre, wobble in ((600.0, 150.0), (1700.0, 400.0)):
        spectrum = np.fft.rfft(noise)
        freqs = np.fft.rfftfreq(n, 1 / AUDIO_RATE)
        f0 = centre + wobble * rng.uniform(-1, 1)
        spectrum *= np.exp(-0.5 * ((freqs - f0) / 120.0) ** 2)
        babble += np.fft.irfft(spectrum, n)
    syllables = np.clip(np.sin(2 * np.pi * 4.2 * t + rng.uniform(0, 2 * np.pi)), 0, None) ** 2
    babble *= syllables / (np.abs(babble).max() + 1e-9)
    audio = 0.6 * audio / (np.abs(audio).max() + 1e-9) + 0.25 * babble
    fade = np.minimum(1.0, np.minimum(t, duration_s - t) / 0.05)
    return (np.clip(audio * fade, -1, 1) * 0.8 * 32767).astype(np.int16)


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(AUDIO_RATE)
        wav.writeframes(samples.tobytes())


def draw_shake(rng: np.random.Generator) -> np.ndarray:
    """The hand-held shake of a clip: (3, K, 3), see :func:`camera_matrix`."""
    amplitudes = np.array([[2.5, 1.5, 0.8], [2.0, 1.2, 0.6], [0.4, 0.3, 0.15]])  # x, y px; roll deg
    frequencies = np.array([0.7, 1.9, 4.3])
    return np.stack(
        [
            np.stack([a, frequencies * rng.uniform(0.8, 1.2, 3), rng.uniform(0, 2 * np.pi, 3)], axis=1)
            for a in amplitudes
        ]
    )


def render_frames(spec: ClipSpec, shake: np.ndarray, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The damaged frames of ``spec``'s clip, uint8 RGB (height, width, 3): filmed with ``shake``
    (:func:`draw_shake`), their blur and noise drawn with ``rng``."""
    from skimage import data  # test extra; only this script needs it

    canvas = make_canvas(data.astronaut())
    previous = None
    for i in range(spec.n_frames):
        t = i / spec.fps
        matrix = camera_matrix(spec, t, shake)
        frame = cv2.warpAffine(
            canvas, matrix, (spec.width, spec.height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101
        )
        # Blur along the camera's motion, at least a little (a slow shutter).
        centre = matrix @ np.array([PAD + FACE_CENTRE[0], PAD + FACE_CENTRE[1], 1.0])
        velocity = np.zeros(2) if previous is None else centre - previous
        previous = centre
        blur_px = spec.min_blur + min(float(np.hypot(*velocity)) * 1.5, 9.0) + rng.uniform(0, 2.0)
        angle = math.degrees(math.atan2(velocity[1], velocity[0])) if velocity.any() else 0.0
        yield np.ascontiguousarray(damage(spec, frame, blur_px, angle, rng))


def make_sample(output: Path, spec: ClipSpec = CLIPS["astronaut"]) -> None:
    """Render, damage and encode ``spec``'s clip to ``output`` (.mp4, H.264 + AAC)."""
    rng = np.random.default_rng(spec.seed)  # one stream: the shake, then the sound, then each frame
    shake = draw_shake(rng)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "audio.wav"
        write_wav(wav, synthesise_audio(spec.duration_s, rng))
        frames = render_frames(spec, shake, rng)
        partial = output.with_name(output.stem + ".tmp.mp4")  # renamed when complete (git-ignored)
        writer = imageio_ffmpeg.write_frames(
            str(partial), (spec.width, spec.height), fps=spec.fps, codec="libx264", quality=None,
            output_params=[
                "-crf", str(spec.crf), "-preset", "medium", "-b:a", spec.audio_bitrate, "-movflags", "+faststart",
                "-shortest",
            ],
            audio_path=str(wav), audio_codec="aac", ffmpeg_log_level="error", macro_block_size=1,
        )
        writer.send(None)
        complete = False
        try:
            for frame in frames:
                writer.send(frame)
            complete = True
        finally:
            writer.close()
            if not complete:
                partial.unlink(missing_ok=True)
        partial.replace(output)
    log.info("wrote %s (%d frames, %.1f s, %.0f kB)", output, spec.n_frames, spec.duration_s,
             output.stat().st_size / 1e3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, nargs="?", default=Path("samples/astronaut.mp4"))
    parser.add_argument("--clip", choices=sorted(CLIPS), default="astronaut", help="which sample clip to make")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    make_sample(args.output, CLIPS[args.clip])
    return 0


if __name__ == "__main__":
    sys.exit(main())
