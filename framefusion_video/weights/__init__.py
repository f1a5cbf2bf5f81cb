"""The shipped generators, as package data: ``ffv_generator.tflite`` (what ``ffv restore`` runs),
``ffv_generator.keras`` (the same weights, for fine-tuning), and ``ffv_span2.tflite`` and
``ffv_span2_sized.tflite`` (the ×2 super-resolution generators of ``ffv restore --upscale 2``, the
second on small faces alone, and of ``4``), and ``ffv_span2_deblur.tflite`` (the ×2 network of
``ffv restore --soft-faces``). ``inference.default_model_path`` finds
them with ``importlib.resources``, so they travel with the package in a wheel or any install."""
