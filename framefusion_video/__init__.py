"""Frame Fusion Video: restore the faces in videos on a plain CPU.

Kept free of heavy imports so that ``ffv --help`` and ``ffv --version`` answer fast.
"""

__version__ = "0.1.0"
