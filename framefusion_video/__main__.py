"""``python -m framefusion_video``: the same as the ``ffv`` command."""

from framefusion_video.cli import main

if __name__ == "__main__":
    main(prog_name="ffv")
