"""The named kinds of synthetic damage (``ffv degrade --kind``, ``ffv eval --kind``), written once,
in a module of their own so that the CLI lists them without importing the damage code (OpenCV)."""

KINDS = ("blur", "motion_blur", "noise", "jpeg", "lowres", "occlusion", "lighting", "mixed")

#: The named mixes of real video damage (``ffv train --video-damage-mix``; ``video_damage.damage_mix``).
VIDEO_DAMAGE_MIXES = ("full", "light", "restorer", "encoded", "sized", "windows", "single", "soft")
