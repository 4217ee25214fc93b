"""Segmentation models: each a plain function composing a backbone's endpoints into logits."""
