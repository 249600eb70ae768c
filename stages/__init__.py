"""The pipeline's stages: decode, preprocess, inference, postprocess."""
