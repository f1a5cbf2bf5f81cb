"""The shipped generator, as package data: ``ffv_generator.tflite`` (what ``ffv restore`` runs) and
``ffv_generator.keras`` (the same weights, for fine-tuning). ``inference.default_model_path`` finds
them with ``importlib.resources``, so they travel with the package in a wheel or any install."""
