"""The restore path, top-down: ``batch`` (files and folders; ``distributed`` runs its plan on
Ray) -> ``clip`` (one video: decode, track, restore, encode) -> ``pipeline`` (one frame: crops or
windows -> ``inference`` -> ``stabilize`` -> ``safety`` review -> ``blending``/``windows`` paste;
``soft_faces`` restores soft faces again on windows of that output).
``config`` holds the options; ``preview`` writes before/after images from the same path.
"""
