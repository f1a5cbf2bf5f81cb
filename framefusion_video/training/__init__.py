"""Training the generator: the networks (U-Net, PatchGAN, SPAN), the GAN and its ``fit`` loop
(``ffv train``), checkpoints, export to ``.keras``/``.tflite`` (``ffv export``) and the
restore-or-leave-alone gate (``ffv fit-gate``).
"""
