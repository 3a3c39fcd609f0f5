"""A sentence-transformers encoder whose last layers were fine-tuned with a head.

``qrerank train --train-layers N`` saves the weights of the last ``N`` transformer layers next to
the head. Reading them back needs two steps, both here so that loading a head
(:mod:`qrerank.heads`) does not depend on the trainer (:mod:`qrerank.train`): the base model
loaded uncached (:func:`base_encoder`), then the saved layers written into it
(:func:`apply_tuned_state`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qrerank.errors import InputError

if TYPE_CHECKING:
    import torch

    from qrerank.embed.st import SentenceTransformerEncoder


def base_encoder(model: str, *, normalized: bool, device: str | None = None) -> SentenceTransformerEncoder:
    """``model`` loaded uncached as a sentence-transformers encoder; other encoders are refused."""
    from qrerank.embed.models import load_encoder
    from qrerank.embed.st import SentenceTransformerEncoder

    enc = load_encoder(model, device=device, normalize=normalized, cache=False)
    if not isinstance(enc, SentenceTransformerEncoder):
        raise InputError(f"fine-tuning encoder layers needs a sentence-transformers model, not {model!r}")
    return enc


def apply_tuned_state(st_model: Any, state: dict[str, torch.Tensor]) -> None:
    """Write saved layer weights into a freshly loaded base model; refuses foreign keys or shapes."""
    own = st_model.state_dict()
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise InputError(f"tuned encoder weights do not fit this model: unknown tensors {unknown[:3]}")
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise InputError(
                f"tuned encoder weight {key} has shape {tuple(value.shape)}, the model {tuple(own[key].shape)}"
            )
    st_model.load_state_dict(state, strict=False)
