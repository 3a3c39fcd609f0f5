"""Head persistence: ``weights.safetensors`` + ``config.json`` (+ ``README.md`` card), atomic.

Weights are read with safetensors only (no pickle), so loading a head from an untrusted
folder cannot execute code. A head trained with ``--train-layers N`` also carries the weights of
the encoder layers it fine-tuned (``encoder.safetensors``, the last N layers only); use
:func:`load_head_encoder` to get that encoder back, or :func:`qrerank.heads.bundle.load_head_bundle`
for the head and its encoder together. Heads, like indexes, should still come from
trusted sources: validation bounds what a bad folder can do, it does not vouch for the weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from qrerank._fs import atomic_dir
from qrerank.core.compression import MIXINGS
from qrerank.core.head import Head
from qrerank.embed.base import Encoder
from qrerank.errors import InputError
from qrerank.heads.kinds import HEAD_KINDS, head_kind

# saved kind -> head class, from the one registry (qrerank.heads.kinds); load_head builds by it
HEADS: dict[str, type[Head]] = {name: k.head for name, k in HEAD_KINDS.items()}
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
ENCODER_FILE = "encoder.safetensors"
HEAD_FORMAT_VERSION = 1
MAX_DIM = 1 << 16  # widest embedding / qubit count / hidden layer a head may declare
MAX_PARAMETERS = 50_000_000  # 200 MB of float32: far above any real head, far below an OOM
MAX_CONFIG_BYTES = 1 << 20


class HeadFormatError(InputError):
    """A head folder whose config or weights are missing, malformed, out of range or unsafe."""


def _dim(field: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_DIM:
        raise HeadFormatError(f"field {field} must be an integer in 1..{MAX_DIM}, got {v!r:.40}")


def _tau(field: str, v: Any) -> None:
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int | float) or not (math.isfinite(v) and v > 0):
        raise HeadFormatError(f"field {field} must be a finite positive number, got {v!r:.40}")


def _flag(field: str, v: Any) -> None:
    if not isinstance(v, bool):
        raise HeadFormatError(f"field {field} must be true or false, got {v!r:.40}")


def _std(field: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not (math.isfinite(v) and 0 <= v <= 1e3):
        raise HeadFormatError(f"field {field} must be a finite number in [0, 1000], got {v!r:.40}")


def _mixing(field: str, v: Any) -> None:
    if v not in MIXINGS or not isinstance(v, str):
        raise HeadFormatError(f"field {field} must be one of {', '.join(MIXINGS)}, got {v!r:.40}")


def _seed(field: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 63:
        raise HeadFormatError(f"field {field} must be an integer in 0..2**63-1, got {v!r:.40}")


_QBEC_FIELDS: dict[str, tuple[Callable[[str, Any], None], bool]] = {
    "in_dim": (_dim, True),
    "out_dim": (_dim, True),
    "tau": (_tau, False),
    "learn_tau": (_flag, False),
    "init_std": (_std, False),
    "mixing": (_mixing, False),
    "mixing_seed": (_seed, False),
}

# head kind -> constructor field -> (check, required): the schema of config.json's "config",
# validated in full before any head is constructed.
HEAD_FIELDS: dict[str, dict[str, tuple[Callable[[str, Any], None], bool]]] = {
    "bloch": {"in_dim": (_dim, True), "tau": (_tau, False), "learn_tau": (_flag, False)},
    "identity": {"in_dim": (_dim, True)},
    "linear": {"in_dim": (_dim, True), "out_dim": (_dim, True)},
    "qbec": _QBEC_FIELDS,
    "qbec-mix": _QBEC_FIELDS,
    "angle": {"in_dim": (_dim, True), "out_dim": (_dim, True), "hidden": (_dim, False)},
    "rotation": {"in_dim": (_dim, True), "tau": (_tau, False)},
}


def make_head(name: str, **config: Any) -> Head:
    """Instantiate a head by kind ("bloch", "linear", "qbec", ...; an alias works too) from ``config``."""
    return head_kind(name).head(**config)


def save_head(
    head: Head,
    out: str | os.PathLike[str],
    *,
    extra: dict[str, Any] | None = None,
    card: str | None = None,
    encoder_state: dict[str, torch.Tensor] | None = None,
    encoder_info: dict[str, Any] | None = None,
) -> Path:
    """Write ``head`` to directory ``out`` atomically; ``extra`` lands in config.json (model, metrics).

    ``encoder_state`` (fine-tuned encoder layers, by state-dict name) goes to ``encoder.safetensors``
    and ``encoder_info`` (``model``, ``normalized``, ``train_layers``) to config.json's ``encoder``.
    """
    out = Path(out)
    if (encoder_state is None) != (encoder_info is None):
        raise ValueError("encoder_state and encoder_info go together")
    with atomic_dir(out) as tmp:
        tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
        save_file(tensors, str(tmp / "weights.safetensors"))
        encoder: dict[str, Any] = {}
        if encoder_state is not None:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in encoder_state.items()}, str(tmp / ENCODER_FILE)
            )
            digest = hashlib.sha256((tmp / ENCODER_FILE).read_bytes()).hexdigest()
            encoder = {"encoder": {**(encoder_info or {}), "file": ENCODER_FILE, "sha256": digest}}
        config = {
            "format_version": HEAD_FORMAT_VERSION,
            "head": head.name,
            "config": head.get_config_dict(),
            "parameters": head.num_parameters(),
            **(extra or {}),
            **encoder,
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if card:
            (tmp / "README.md").write_text(card)
    return out


def _inside(folder: Path, name: Any, field: str) -> Path:
    """``folder/name`` resolved, refused unless it stays inside ``folder`` (no absolute, no ``..``)."""
    if not isinstance(name, str) or not name.strip() or "\0" in name:
        raise HeadFormatError(f"field {field} must be a file name inside the head folder, got {name!r:.60}")
    if (
        PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).is_absolute()
        or ".." in re.split(r"[/\\]", name)
    ):
        raise HeadFormatError(f"field {field} {name!r:.60} must be a relative path inside the head folder")
    root = folder.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):  # a symlink pointing out of the folder
        raise HeadFormatError(f"field {field} {name!r:.60} resolves outside the head folder {folder}")
    return path


def _read_json_object(cfg_path: Path) -> dict[str, Any]:
    """The JSON object in ``cfg_path`` (at most MAX_CONFIG_BYTES); anything else is a HeadFormatError."""
    try:
        size = cfg_path.stat().st_size
        raw = cfg_path.read_bytes() if size <= MAX_CONFIG_BYTES else b""
    except OSError as exc:
        raise HeadFormatError(f"cannot read {cfg_path}: {exc.strerror or exc}") from None
    if size > MAX_CONFIG_BYTES:
        raise HeadFormatError(f"{cfg_path} is larger than {MAX_CONFIG_BYTES} bytes: not a head config")
    try:
        cfg = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise HeadFormatError(f"{cfg_path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise HeadFormatError(f"{cfg_path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise HeadFormatError(f"{cfg_path} is not a valid head config (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer past sys.get_int_max_str_digits()
        raise HeadFormatError(f"{cfg_path} is not a valid head config ({str(exc).split(';')[0]})") from None
    if not isinstance(cfg, dict):
        raise HeadFormatError(f"{cfg_path} must hold a JSON object, not {type(cfg).__name__}")
    return cfg


def _read_config(folder: Path) -> dict[str, Any]:
    """config.json of a head folder, parsed and schema-checked (values too), nothing built yet."""
    cfg_path = _inside(folder, CONFIG_FILE, "config file")
    cfg = _read_json_object(cfg_path)
    if cfg.get("format_version", HEAD_FORMAT_VERSION) != HEAD_FORMAT_VERSION:
        raise HeadFormatError(
            f"{cfg_path}: field format_version is {cfg['format_version']!r:.20}, this qrerank reads "
            f"version {HEAD_FORMAT_VERSION}"
        )
    kind = cfg.get("head")
    if not isinstance(kind, str) or kind not in HEAD_FIELDS:
        raise HeadFormatError(
            f"{cfg_path}: field head must be one of {', '.join(sorted(HEAD_FIELDS))}, got {kind!r:.40}"
        )
    params = cfg.get("config")
    if not isinstance(params, dict):
        raise HeadFormatError(f"{cfg_path}: field config must be an object of {kind} head settings")
    fields = HEAD_FIELDS[kind]
    for key in params:
        if key not in fields:
            raise HeadFormatError(f"{cfg_path}: unknown field config.{key!s:.40} for a {kind} head")
    for key, (check, required) in fields.items():
        if key in params:
            check(f"config.{key}", params[key])
        elif required:
            raise HeadFormatError(f"{cfg_path}: field config.{key} is missing")
    if "encoder" in cfg:
        _check_encoder_info(cfg_path, cfg["encoder"])
    return cfg


def _check_encoder_info(cfg_path: Path, info: Any) -> None:
    if not (isinstance(info, dict) and isinstance(info.get("model"), str) and info["model"].strip()):
        raise HeadFormatError(f"{cfg_path}: field encoder must be an object naming its base 'model'")
    if not isinstance(info.get("file", ENCODER_FILE), str):
        raise HeadFormatError(f"{cfg_path}: field encoder.file must be a file name")
    digest = info.get("sha256")
    if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise HeadFormatError(f"{cfg_path}: field encoder.sha256 must be 64 lowercase hex digits")
    if not isinstance(info.get("normalized", True), bool):
        raise HeadFormatError(f"{cfg_path}: field encoder.normalized must be true or false")


def _weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header, without reading the tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise HeadFormatError(
            f"{path} is not a valid safetensors file: {str(exc).splitlines()[0]:.120}"
        ) from None


def load_head(path: str | os.PathLike[str], *, in_dim: int | None = None) -> Head:
    """Load a saved head; ``in_dim`` (the encoder's dim) is checked against the head's.

    The config is validated in full, and the head's tensor shapes are worked out on the meta
    device and checked against the weights file's header, before anything is allocated.
    Raises HeadFormatError (an InputError) naming the bad field or file.
    """
    path = Path(path)
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise HeadFormatError(f"{path} is not a saved head (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    cfg = _read_config(path)
    kind, params = cfg["head"], cfg["config"]
    if in_dim is not None and params["in_dim"] != in_dim:
        raise HeadFormatError(
            f"head {path} expects {params['in_dim']}-d embeddings but the encoder gives {in_dim}-d"
        )
    try:
        with torch.device("meta"):  # shapes only: no memory, no random init
            expected = {k: tuple(v.shape) for k, v in HEADS[kind](**params).state_dict().items()}
    except ValueError as exc:  # the head's own cross-field rules, e.g. qbec needs in_dim > out_dim
        raise HeadFormatError(f"{path}/{CONFIG_FILE}: invalid {kind} head config: {exc}") from None
    size = sum(math.prod(s) for s in expected.values())
    if size > MAX_PARAMETERS:
        raise HeadFormatError(
            f"{path}/{CONFIG_FILE}: a {kind} head of {size:,} parameters exceeds the {MAX_PARAMETERS:,} limit"
        )
    weights = _inside(path, WEIGHTS_FILE, "weights file")
    found = _weight_shapes(weights)
    if found != expected:
        diff = sorted(set(found.items()) ^ set(expected.items()))[:3]
        raise HeadFormatError(f"{weights} does not match its config (tensors differ: {diff})")
    head = HEADS[kind](**params)
    try:
        head.load_state_dict(load_file(str(weights)))
    except Exception as exc:  # safetensors' own errors, or a dtype torch cannot copy
        raise HeadFormatError(f"{weights} cannot be loaded: {str(exc).splitlines()[0]:.120}") from None
    return head.eval()


def head_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """config.json of the head folder ``path``, validated in full; HeadFormatError otherwise."""
    return _read_config(Path(path))


def head_encoder_info(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """config.json's validated ``encoder`` entry of a head with fine-tuned encoder layers, else None."""
    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        return None  # not a head at all: load_head says so
    info = head_config(path).get("encoder")
    return dict(info) if info is not None else None


def _model_key(name: str) -> str:
    """A model name without its hub namespace, so "sentence-transformers/x" matches "x"."""
    return name.rstrip("/").rsplit("/", 1)[-1].lower()


def load_head_encoder(
    path: str | os.PathLike[str], *, device: str | None = None, cache: bool = True, model: str | None = None
) -> Encoder | None:
    """The fine-tuned encoder a head was trained with (``--train-layers N``), or None.

    Loads the base model named in config.json and writes the saved layers into it. Its name
    carries the weights' hash, so on-disk embedding caches never mix it with the base model.
    ``model``, when given, must name that base model: a user who asked for another encoder
    gets an error rather than silently the head's.
    """
    path = Path(path)
    info = head_encoder_info(path)
    if info is None:
        return None
    if model is not None and _model_key(model) != _model_key(info["model"]):
        raise InputError(
            f"head {path} was trained with fine-tuned layers of {info['model']}, not {model}; "
            "leave the model unset to use the head's own encoder"
        )
    weights = _inside(path, info.get("file", ENCODER_FILE), "encoder.file")
    if not weights.is_file():
        raise HeadFormatError(f"{path} names a fine-tuned encoder but {weights.name} is missing")
    blob = weights.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if info.get("sha256") not in (None, digest):
        raise HeadFormatError(f"{weights} does not match the sha256 in config.json: the head is corrupt")
    from safetensors.torch import load as load_bytes

    from qrerank.embed.cache import CachedEncoder, EmbeddingCache
    from qrerank.embed.tuned import apply_tuned_state, base_encoder

    base = base_encoder(info["model"], normalized=bool(info.get("normalized", True)), device=device)
    try:
        state = load_bytes(blob)
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise HeadFormatError(f"{weights} is not a valid safetensors file: {exc}") from exc
    apply_tuned_state(base.model, {k: v.to(base.device) for k, v in state.items()})
    base.model.eval()
    base.name = f"{base.name}+tuned-{digest[:12]}"
    if not cache:
        return base
    return CachedEncoder(base, EmbeddingCache.for_encoder(base))
