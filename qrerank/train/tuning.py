"""Fine-tune the last N transformer layers of a sentence-transformers encoder, cheaply on a CPU.

The encoder is split at layer ``L - N``: a frozen *prefix* (token embeddings and the first
``L - N`` layers) and a trainable *suffix* (the last ``N`` layers, then the model's own pooling
and normalisation). The prefix's output for a text never changes during training, so it is
computed once per text, under ``no_grad``, and kept (``[tokens, hidden]`` per text, unpadded).
Each training step then runs only the suffix: with ``N = 1`` of MiniLM's 6 layers, a step costs
about a sixth of a full forward pass plus its backward pass, which is what makes encoder training
fit on two CPU cores.

After training, the full model with the trained weights computes exactly ``suffix(prefix(x))``
(tested), so inference needs no split: :func:`tuned_state` is saved next to the head and
:func:`qrerank.embed.tuned.apply_tuned_state` writes it back into a freshly loaded base model.

Works for encoders whose Hugging Face model exposes ``embeddings`` and ``encoder.layer`` (BERT,
RoBERTa, XLM-R, MPNet, E5, BGE, MiniLM); other architectures get a clear error.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as nnf
from torch import nn

from qrerank.errors import InputError


class _Passthrough(nn.Module):
    """Stands in for the embedding layer: the suffix's input is the cached prefix output."""

    def forward(self, *args: Any, inputs_embeds: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if inputs_embeds is None:
            raise RuntimeError("the suffix model takes inputs_embeds (the prefix's hidden states)")
        return inputs_embeds


def _with_layers(model: Any, layers: nn.ModuleList, embeddings: nn.Module | None) -> nn.Module:
    """A shallow copy of ``model`` running only ``layers`` (parameters shared, not copied)."""
    clone = copy.copy(model)
    clone._modules = dict(model._modules)
    encoder = copy.copy(model.encoder)
    encoder._modules = dict(model.encoder._modules)
    encoder.layer = layers
    clone.encoder = encoder
    if embeddings is not None:
        clone.embeddings = embeddings
    if "pooler" in clone._modules:  # the HF pooler is unused by sentence-transformers pooling
        clone.pooler = None
    return clone


def _layers(st_model: Any) -> tuple[nn.Module, nn.ModuleList]:
    hf = getattr(st_model[0], "auto_model", None)
    layers = getattr(getattr(hf, "encoder", None), "layer", None)
    if hf is None or getattr(hf, "embeddings", None) is None or not isinstance(layers, nn.ModuleList):
        name = type(hf).__name__ if hf is not None else type(st_model[0]).__name__
        raise InputError(
            f"--train-layers needs a transformer with embeddings and encoder.layer (BERT, MPNet, ...); "
            f"{name} has another layout"
        )
    return hf, layers


def num_layers(st_model: Any) -> int:
    """Transformer layers of a sentence-transformers model."""
    return len(_layers(st_model)[1])


def trainable_parameters(st_model: Any, n: int) -> dict[str, nn.Parameter]:
    """The parameters of the last ``n`` layers, by their name in ``st_model.state_dict()``."""
    _, layers = _layers(st_model)
    total = len(layers)
    if not 1 <= n <= total:
        raise InputError(f"--train-layers must be between 1 and {total} for this encoder, got {n}")
    keep = {id(p) for layer in layers[total - n :] for p in layer.parameters()}
    return {name: p for name, p in st_model.named_parameters() if id(p) in keep}


def tuned_state(st_model: Any, n: int) -> dict[str, torch.Tensor]:
    """The weights of the last ``n`` layers, detached on the CPU (what ``qrerank train`` saves)."""
    return {k: p.detach().cpu().contiguous().clone() for k, p in trainable_parameters(st_model, n).items()}


class LayerSplit:
    """A sentence-transformers model split into a cached frozen prefix and a trainable suffix.

    Args:
        st_model: a ``SentenceTransformer`` (its last ``n`` layers are trained in place).
        n: layers to train, ``1 <= n <= L``.
        renormalize: L2-normalise the output (for a model without a Normalize module whose
            encoder normalises after the fact, as ``SentenceTransformerEncoder`` does).
        chunk: texts per prefix forward pass.
    """

    def __init__(self, st_model: Any, n: int, *, renormalize: bool = False, chunk: int = 32) -> None:
        hf, layers = _layers(st_model)
        self.st_model, self.n, self.chunk, self.renormalize = st_model, n, chunk, renormalize
        self.parameters = trainable_parameters(st_model, n)  # validates n
        for p in st_model.parameters():
            p.requires_grad_(False)
        for p in self.parameters.values():
            p.requires_grad_(True)
        cut = len(layers) - n
        self._prefix = _with_layers(hf, nn.ModuleList(layers[:cut]), None).eval()
        self._suffix = _with_layers(hf, nn.ModuleList(layers[cut:]), _Passthrough())
        self._heads = list(st_model)[1:]  # pooling (+ normalize): the model's own
        self._cache: dict[str, torch.Tensor] = {}
        self._initial = tuned_state(st_model, n)

    @property
    def device(self) -> torch.device:
        return next(iter(self.parameters.values())).device

    @torch.no_grad()
    def reset(self) -> None:
        """Back to the base model's weights (the prefix cache stays valid: the prefix is frozen)."""
        self.load(self._initial)

    @torch.no_grad()
    def load(self, state: dict[str, torch.Tensor]) -> None:
        """Copy ``state`` (as from :func:`tuned_state`) into the trainable layers."""
        for key, p in self.parameters.items():
            p.copy_(state[key].to(p.device))

    def state(self) -> dict[str, torch.Tensor]:
        return tuned_state(self.st_model, self.n)

    @property
    def cached_texts(self) -> int:
        return len(self._cache)

    def train(self, mode: bool = True) -> LayerSplit:
        """Dropout on in the trained layers (the prefix always runs in eval mode)."""
        self._suffix.train(mode)
        for m in self._heads:
            m.train(mode)
        return self

    @torch.no_grad()
    def _fill(self, texts: Sequence[str]) -> None:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        # Similar lengths together: less padding in each prefix pass.
        missing.sort(key=len)
        device = next(self._prefix.parameters()).device
        for start in range(0, len(missing), self.chunk):
            batch = missing[start : start + self.chunk]
            # sentence-transformers >= 6 renamed tokenize to preprocess.
            tokenize = getattr(self.st_model, "preprocess", None) or self.st_model.tokenize
            features = tokenize(batch)
            inputs = {
                k: v.to(device)
                for k, v in features.items()
                if k in ("input_ids", "attention_mask", "token_type_ids")
            }
            hidden = self._prefix(**inputs).last_hidden_state
            lengths = inputs["attention_mask"].sum(dim=1).tolist()
            for text, h, n_tok in zip(batch, hidden, lengths, strict=True):
                self._cache[text] = h[: int(n_tok)].clone()

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """``[len(texts), d]`` sentence embeddings = pooling(suffix(cached prefix)); differentiable."""
        if not texts:
            raise ValueError("no texts to embed")
        self._fill(texts)
        hidden = [self._cache[t] for t in texts]
        width = max(h.shape[0] for h in hidden)
        padded = hidden[0].new_zeros(len(hidden), width, hidden[0].shape[1])
        mask = torch.zeros(len(hidden), width, dtype=torch.long, device=padded.device)
        for i, h in enumerate(hidden):
            padded[i, : h.shape[0]] = h
            mask[i, : h.shape[0]] = 1
        out = self._suffix(inputs_embeds=padded, attention_mask=mask).last_hidden_state
        features: dict[str, torch.Tensor] = {"token_embeddings": out, "attention_mask": mask}
        for module in self._heads:
            features = module(features)
        emb = features["sentence_embedding"]
        return nnf.normalize(emb, dim=-1) if self.renormalize else emb

    @torch.no_grad()
    def embed_eval(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """:meth:`embed` in eval mode, chunked, without gradients (validation)."""
        if not texts:
            return torch.empty(0)
        self._fill(texts)
        # Similar lengths in a batch: each batch pads only to its own longest text.
        order = sorted(range(len(texts)), key=lambda i: self._cache[texts[i]].shape[0])
        was = self._suffix.training
        self.train(False)
        try:
            parts = [
                self.embed([texts[i] for i in order[s : s + batch_size]])
                for s in range(0, len(order), batch_size)
            ]
        finally:
            self.train(was)
        sorted_emb = torch.cat(parts)
        out = torch.empty_like(sorted_emb)
        out[torch.tensor(order, device=out.device)] = sorted_emb
        return out
