"""Measuring restorations: scores of restored face images against clean ones (``ffv eval``),
flicker and identity drift along face tracks (``ffv eval-video``), identity distance (dlib).
"""
