"""Text encoders: the Encoder protocol, sentence-transformers models, an embedding cache."""

from qrerank.embed.base import Encoder
from qrerank.embed.cache import CachedEncoder, EmbeddingCache
from qrerank.embed.hashing import HashingEncoder
from qrerank.embed.models import DEFAULT_MODEL, load_encoder

__all__ = ["DEFAULT_MODEL", "CachedEncoder", "EmbeddingCache", "Encoder", "HashingEncoder", "load_encoder"]
