"""Faces in frames: detection and landmarks (MediaPipe), face tracks across frames, and the
5-point alignment to a crop and back.
"""
