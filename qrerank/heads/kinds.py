"""The one registry of head kinds: the name config.json stores, the class, the CLI's other names.

Each kind is named once, by its class's ``name`` (what :func:`qrerank.heads.io.save_head`
writes to config.json's ``head``). ``qrerank train --head`` takes that name or one of the
kind's aliases, the names training used before the two were one list: ``none`` for ``bloch``
(no projection, only the Bloch encoding's learnable tau) and ``cosine`` for ``identity`` (no
head at all; with ``--train-layers`` the encoder trains on cosine). Saved heads keep the
canonical name, so both spellings train the same head and it loads the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from qrerank.core.angles import AngleHead
from qrerank.core.compression import MixingCompressionHead, QuantumCompressionHead
from qrerank.core.head import BlochHead, Head, IdentityHead
from qrerank.core.linear import LinearHead
from qrerank.core.rotation import RotationHead
from qrerank.errors import InputError


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadKind:
    """One kind of head: its class, the other names ``--head`` accepts, a line of help.

    ``takes_out_dim`` is False for the kinds with one qubit (or one output) per input
    dimension (bloch, identity, rotation): a fresh head of such a kind ignores ``out_dim``.
    """

    head: type[Head]
    aliases: tuple[str, ...] = ()
    help: str
    takes_out_dim: bool = True

    @property
    def name(self) -> str:
        """The canonical name: the class's ``name``, stored in a saved head's config.json."""
        return self.head.name

    def build(self, in_dim: int, out_dim: int) -> Head:
        """A freshly initialised head of this kind for ``in_dim``-d embeddings."""
        return self.head(in_dim, out_dim) if self.takes_out_dim else self.head(in_dim)


HEAD_KINDS: dict[str, HeadKind] = {
    k.name: k
    for k in (
        HeadKind(
            head=BlochHead,
            aliases=("none",),
            help="Bloch encoding with a learnable tau, no projection",
            takes_out_dim=False,
        ),
        HeadKind(
            head=IdentityHead,
            aliases=("cosine",),
            help="no head, cosine (needs --train-layers)",
            takes_out_dim=False,
        ),
        HeadKind(head=LinearHead, help="linear projection (BEC)"),
        HeadKind(head=QuantumCompressionHead, help="quantum compression"),
        HeadKind(
            head=MixingCompressionHead,
            help="quantum compression after a fixed random orthogonal rotation (no extra parameters)",
        ),
        HeadKind(head=AngleHead, help="MLP to per-qubit angles"),
        HeadKind(
            head=RotationHead,
            help="Bloch encoding with a learned tau and offset per qubit (2d parameters, --out-dim ignored)",
            takes_out_dim=False,
        ),
    )
}

# every name --head accepts -> the canonical kind name, each kind followed by its aliases
HEAD_NAMES: dict[str, str] = {n: k.name for k in HEAD_KINDS.values() for n in (k.name, *k.aliases)}


def head_kind(name: str) -> HeadKind:
    """The kind called ``name`` (canonical or alias); InputError listing every accepted name."""
    if name not in HEAD_NAMES:
        raise InputError(f"unknown head {name!r}; choose one of {', '.join(HEAD_NAMES)}")
    return HEAD_KINDS[HEAD_NAMES[name]]


def heads_help() -> str:
    """``name (alias) = help`` for every kind, for the CLI's ``--head``."""
    return "; ".join(f"{_spelled(k)} = {k.help}" for k in HEAD_KINDS.values())


def _spelled(kind: HeadKind) -> str:
    """``name`` or ``name (alias, ...)``."""
    return f"{kind.name} ({', '.join(kind.aliases)})" if kind.aliases else kind.name
