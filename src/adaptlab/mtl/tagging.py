"""A layer-wise multi-task BiLSTM tagger: chunking at the top, POS tagging supervised at a chosen layer.

Søgaard & Goldberg (2016) stack ``L`` bidirectional LSTM layers over word features and read each task from
the layer that suits it: the high-level task (chunking) from the last layer, the low-level auxiliary task
(POS tagging) from layer ``k``. With ``k = 1`` the POS loss shapes only the embeddings and the first layer;
layers ``2..L`` are trained by the chunking loss alone. :class:`LayerwiseTagger` builds that network
(``pos_layer = 0``: no POS head, chunking alone); :func:`tagging_loss` is the pure objective over a
parameter dict,

.. math:: \\mathcal L(\\theta) = \\mathrm{CE}_{\\text{mask}}\\big(W_c h^{(L)}, y^{\\text{chunk}}\\big)
          + \\lambda\\, \\mathrm{CE}_{\\text{mask}}\\big(W_p h^{(k)}, y^{\\text{POS}}\\big),

where :math:`h^{(\\ell)}` is layer :math:`\\ell`'s output and the masked cross-entropy averages over the real
tokens only (padding never counts). Sequences are packed, so a token's output does not depend on how much
padding its batch carries.

Token features (:func:`token_features`): the lowercased word, its last three letters and its shape
(lower / Capitalised / UPPER / digits / punctuation / other), each an id into a :class:`Vocab`.

Example::

    >>> import torch
    >>> net = LayerwiseTagger(vocab=10, suffixes=10, n_chunk=5, n_pos=4, emb=8, hidden=6, pos_layer=1)
    >>> x = torch.ones(2, 5, 3, dtype=torch.long); lengths = torch.tensor([5, 3])
    >>> out = net(x, lengths)
    >>> out["chunk"].shape, out["pos"].shape
    (torch.Size([2, 5, 5]), torch.Size([2, 5, 4]))
    >>> batch = {"x": x, "lengths": lengths, "chunk": torch.zeros(2, 5, dtype=torch.long),
    ...          "pos": torch.zeros(2, 5, dtype=torch.long)}
    >>> loss, aux = tagging_loss(net, dict(net.named_parameters()), batch)
    >>> sorted(aux)
    ['chunk', 'pos']

References:
    Søgaard, Goldberg, "Deep multi-task learning with low level tasks supervised at lower layers", ACL 2016.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PAD, UNK = 0, 1  # reserved ids of every Vocab
SHAPES = ("<pad>", "lower", "title", "upper", "digit", "punct", "other")


def word_shape(word: str) -> int:
    """Index in :data:`SHAPES` of a word's shape (never 0, which is padding)."""
    if word.isalpha():
        return 1 if word.islower() else 3 if word.isupper() and len(word) > 1 else 2 if word[0].isupper() else 6
    if word.isdigit():
        return 4
    if all(not c.isalnum() for c in word):
        return 5
    return 6


class Vocab:
    """Strings to ids: 0 is padding, 1 unknown; built from counts with a minimum frequency."""

    def __init__(self, items: Iterable[str], min_count: int = 1):
        counts = Counter(items)
        self.itos = ["<pad>", "<unk>"] + sorted(s for s, c in counts.items() if c >= min_count)
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def __call__(self, s: str) -> int:
        return self.stoi.get(s, UNK)


def token_features(tokens: Sequence[str], words: Vocab, suffixes: Vocab) -> Tensor:
    """(T, 3) long tensor: word id (lowercased), suffix id (last 3 letters, lowercased), shape id."""
    return torch.tensor([[words(t.lower()), suffixes(t.lower()[-3:]), word_shape(t)] for t in tokens],
                        dtype=torch.long).reshape(len(tokens), 3)


def pad_batch(seqs: Sequence[Tensor], value: int = PAD) -> Tensor:
    """Stack sequences of shape (T_i, ...) into (B, max T_i, ...), right-padded with ``value``."""
    return nn.utils.rnn.pad_sequence(list(seqs), batch_first=True, padding_value=value)


class LayerwiseTagger(nn.Module):
    """Word features -> ``layers`` BiLSTM layers; chunk head on the last layer, POS head on ``pos_layer``.

    Args:
        vocab, suffixes: sizes of the word and suffix vocabularies (ids 0 = padding, 1 = unknown).
        n_chunk, n_pos: numbers of chunk (BIO) and POS tags.
        emb: word embedding size (the suffix embedding is half of it, the shape embedding 8).
        hidden: LSTM units per direction (a layer's output has ``2 * hidden`` features).
        layers: BiLSTM layers (Søgaard & Goldberg use 3).
        pos_layer: layer (1..layers) the POS head reads; 0: no POS head.
        dropout: dropout on the embeddings and between layers.
    """

    def __init__(self, vocab: int, suffixes: int, n_chunk: int, n_pos: int, emb: int = 64, hidden: int = 64,
                 layers: int = 3, pos_layer: int = 1, dropout: float = 0.2):
        super().__init__()
        if not 0 <= pos_layer <= layers:
            raise ValueError(f"pos_layer={pos_layer}; expected 0 (no POS head) or a layer in 1..{layers}")
        self.pos_layer, self.layers = pos_layer, layers
        self.word = nn.Embedding(vocab, emb, padding_idx=PAD)
        self.suffix = nn.Embedding(suffixes, max(1, emb // 2), padding_idx=PAD)
        self.shape = nn.Embedding(len(SHAPES), 8, padding_idx=0)
        sizes = [emb + max(1, emb // 2) + 8] + [2 * hidden] * (layers - 1)
        self.lstms = nn.ModuleList(nn.LSTM(n, hidden, batch_first=True, bidirectional=True) for n in sizes)
        self.drop = nn.Dropout(dropout)
        self.chunk_head = nn.Linear(2 * hidden, n_chunk)
        self.pos_head = nn.Linear(2 * hidden, n_pos) if pos_layer else None

    def layer_outputs(self, x: Tensor, lengths: Tensor) -> list[Tensor]:
        """Every layer's output, a list of ``layers`` tensors (B, T, 2 * hidden); zero at padded positions."""
        h = self.drop(torch.cat([self.word(x[..., 0]), self.suffix(x[..., 1]), self.shape(x[..., 2])], -1))
        T, outs = x.shape[1], []
        for lstm in self.lstms:
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
            y, _ = lstm(packed)
            y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=T)  # (B, T, 2h)
            outs.append(y)
            h = self.drop(y)
        return outs

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:
        """``{"chunk": (B, T, n_chunk)}`` logits, plus ``"pos": (B, T, n_pos)`` when there is a POS head."""
        outs = self.layer_outputs(x, lengths)
        res = {"chunk": self.chunk_head(self.drop(outs[-1]))}
        if self.pos_head is not None:
            res["pos"] = self.pos_head(self.drop(outs[self.pos_layer - 1]))
        return res


def length_mask(lengths: Tensor, T: int) -> Tensor:
    """(B, T) bool: True at the real tokens of each sequence."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def masked_cross_entropy(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Mean cross-entropy over the positions where ``mask`` is True. logits (B, T, C), targets/mask (B, T)."""
    ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")  # (B*T,)
    m = mask.flatten().to(ce.dtype)
    return (ce * m).sum() / m.sum().clamp_min(1)


def tagging_loss(model: LayerwiseTagger, params: dict[str, Tensor], batch: dict[str, Tensor],
                 pos_weight: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
    """The chunking loss plus ``pos_weight`` times the POS loss (when the model has a POS head).

    Args:
        model: the network whose structure is used (its own parameters are not read).
        params: ``{name: tensor}`` as ``model.named_parameters()``.
        batch: ``x`` (B, T, 3), ``lengths`` (B,), ``chunk`` and ``pos`` targets (B, T).
        pos_weight: λ, the weight of the POS loss.

    Returns:
        ``(loss, {"chunk": chunk loss, "pos": POS loss})`` (``"pos"`` only with a POS head), detached aux.
    """
    out = torch.func.functional_call(model, params, (batch["x"], batch["lengths"]))
    mask = length_mask(batch["lengths"], batch["x"].shape[1])
    lc = masked_cross_entropy(out["chunk"], batch["chunk"], mask)
    aux = {"chunk": lc.detach()}
    loss = lc
    if "pos" in out:
        lp = masked_cross_entropy(out["pos"], batch["pos"], mask)
        aux["pos"] = lp.detach()
        loss = lc + pos_weight * lp
    return loss, aux


@torch.no_grad()
def predict_tags(model: LayerwiseTagger, x: Tensor, lengths: Tensor) -> dict[str, list[list[int]]]:
    """Arg-max tag ids per task, one list per sentence cut to its length (model put in eval mode meanwhile)."""
    was = model.training
    model.eval()
    out = model(x, lengths)
    model.train(was)
    return {k: [row[:n].tolist() for row, n in zip(v.argmax(-1), lengths.tolist())] for k, v in out.items()}
