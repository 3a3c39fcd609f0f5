"""Saving and loading trained heads: safetensors weights + config.json + model card."""

from qrerank.heads.io import HEADS, HeadFormatError, load_head, save_head

__all__ = ["HEADS", "HeadFormatError", "load_head", "save_head"]
