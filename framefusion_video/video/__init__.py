"""Video files through ffmpeg (imageio-ffmpeg): probing, streaming decode, atomic encode with
the source audio. Frames are uint8 RGB (H, W, 3).
"""
