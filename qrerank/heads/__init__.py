"""Saving and loading trained heads: safetensors weights + config.json + model card.

:func:`load_head_bundle` loads a head with its fine-tuned encoder (if it has one) for use.
"""

from qrerank.heads.bundle import HeadBundle, load_head_bundle
from qrerank.heads.io import HEADS, HeadFormatError, load_head, save_head

__all__ = ["HEADS", "HeadBundle", "HeadFormatError", "load_head", "load_head_bundle", "save_head"]
