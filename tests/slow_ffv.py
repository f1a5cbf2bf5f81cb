"""``python tests/slow_ffv.py [ffv arguments]``: the real ``ffv`` command line with a stand-in pipeline.

Decoding, encoding, claiming, muxing, renaming and signal handling are ffv's own; only the face
pipeline is replaced by one that passes frames through unchanged, taking ``FFV_TEST_FRAME_DELAY``
seconds per frame (default 0.05), without loading MediaPipe or a model. With ``--ray``, the Ray
workers run the same stand-in (installed in each worker before its clip). Fault tests run it as a
subprocess so that they can signal, kill or race real runs in a few seconds.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator


def install_stand_in(delay: float) -> None:
    """Replace the model and the face pipeline of this process with the pass-through stand-in."""
    import framefusion_video.restore.batch as batch
    import framefusion_video.restore.clip as restore
    from framefusion_video.restore.pipeline import RestoredFrame
    from framefusion_video.video.decode import read_frames

    class PassThrough:
        crop_size = 64

        def restore(self, crops):
            return crops

    def frames_unchanged(src, info, restorer, config, *, detector=None, select=None) -> Iterator:
        for index, frame in enumerate(read_frames(src, info)):
            time.sleep(delay)
            yield RestoredFrame(index, frame, frame)

    batch.load_default_restorer = restore.load_default_restorer = lambda config: PassThrough()
    restore.iter_restored = frames_unchanged


def main() -> None:
    import framefusion_video.restore.distributed as distributed
    from framefusion_video.cli import main as ffv

    delay = float(os.environ.get("FFV_TEST_FRAME_DELAY", "0.05"))
    restore_clip = distributed.restore_clip

    def stand_in_clip(*args, **kwargs):
        """A Ray task (sent by value, as it is defined here): the stand-in, then the clip."""
        install_stand_in(delay)
        return restore_clip(*args, **kwargs)

    install_stand_in(delay)
    distributed.restore_clip = stand_in_clip
    ffv(args=sys.argv[1:], prog_name="ffv")


if __name__ == "__main__":
    main()
