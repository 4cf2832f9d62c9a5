"""Omniglot read in place from the official zip archives: characters, alphabets, rotations, the 20 runs.

Omniglot has 1623 handwritten characters from 50 alphabets, each drawn once by 20 people, as 105x105 1-bit
PNGs. The official repository (brendenlake/omniglot, MIT licence) ships them as zips under ``python/``:

=====================  ======================================  ===========================================
name                   file                                    content
=====================  ======================================  ===========================================
``small1``             images_background_small1.zip            "minimal" background set 1: 5 alphabets, 136 chars
``small2``             images_background_small2.zip            "minimal" background set 2: 5 alphabets, 156 chars
``small``              both of the above, deduplicated         8 alphabets, 242 chars (Greek, Latin are in both)
``background``         images_background.zip                   30 alphabets, 964 chars
``evaluation``         images_evaluation.zip                   20 alphabets, 659 chars
``runs``               one-shot-classification/all_runs.zip    the original 20 runs of 20-way 1-shot
=====================  ======================================  ===========================================

Files are looked up in ``root`` (an argument) or ``$ADAPTLAB_DATA/omniglot``, checked against pinned SHA-256
digests (the full background/evaluation archives have no pinned digest here and are checked structurally
instead: a valid zip with the published number of characters), and decoded straight from the zip (no
extraction needed; :func:`extract` unpacks one safely if you want the PNGs). ``download=True`` fetches missing
files from the official repository first. Images are float32 tensors with ink = 1, background = 0, either
native 105x105 or area-averaged to 28x28 (the size used by the few-shot literature).

Example::

    >>> chars = load_characters("small1", size=28)        # reads $ADAPTLAB_DATA/omniglot
    >>> chars.images.shape
    torch.Size([136, 20, 28, 28])
    >>> chars.with_rotations().images.shape
    torch.Size([544, 20, 28, 28])

References:
    B. M. Lake, R. Salakhutdinov, J. B. Tenenbaum. Human-level concept learning through probabilistic program
    induction. Science 350(6266), 2015.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from adaptlab.data._archive import download as _download
from adaptlab.data._archive import safe_extract_zip, verify_sha256
from adaptlab.errors import DataError

OFFICIAL_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"


@dataclass(frozen=True)
class _Archive:
    file: str             # path relative to the omniglot folder (and to OFFICIAL_URL)
    sha256: str | None    # pinned digest, or None: checked structurally (n_characters) instead
    n_characters: int | None


ARCHIVES: dict[str, _Archive] = {
    "small1": _Archive("images_background_small1.zip",
                       "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4", 136),
    "small2": _Archive("images_background_small2.zip",
                       "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f", 156),
    "background": _Archive("images_background.zip", None, 964),
    "evaluation": _Archive("images_evaluation.zip", None, 659),
    "runs": _Archive("one-shot-classification/all_runs.zip",
                     "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325", None),
}
SETS = ("small1", "small2", "small", "background", "evaluation")
NATIVE = 105
_DECODED: dict[tuple[str, str], tuple[torch.Tensor, list[str], list[str]]] = {}  # (file, name) -> 105 px


# ------------------------------------------------------------------------------------------ locating


def omniglot_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the archives: ``root`` if given, else ``$ADAPTLAB_DATA/omniglot``."""
    if root is not None:
        return Path(root)
    base = os.environ.get("ADAPTLAB_DATA")
    if not base:
        raise DataError("Omniglot location unknown: set ADAPTLAB_DATA to the folder that holds omniglot/ "
                        "(or pass root=...), or pass download=True to fetch the official archives")
    return Path(base) / "omniglot"


def _check_structure(path: Path, arc: _Archive) -> None:
    """For archives without a pinned digest: a readable zip with the published number of characters."""
    try:
        with zipfile.ZipFile(path) as zf:
            chars = {tuple(n.split("/")[1:3]) for n in zf.namelist() if n.endswith(".png")}
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"corrupt archive {path}: {e}; delete it and fetch it again") from None
    if arc.n_characters is not None and len(chars) != arc.n_characters:
        raise DataError(f"corrupt archive {path}: {len(chars)} characters, expected {arc.n_characters}")


def archive_path(name: str, root: str | os.PathLike | None = None, download: bool = False) -> Path:
    """Path of a verified archive (``name`` is a key of :data:`ARCHIVES`), downloading it if asked.

    Raises:
        DataError: the file is missing (and ``download`` is False) or fails its checksum/structure check.
    """
    if name not in ARCHIVES:
        raise DataError(f"unknown Omniglot archive {name!r}; expected one of {', '.join(ARCHIVES)}")
    arc = ARCHIVES[name]
    path = omniglot_dir(root) / arc.file
    url = OFFICIAL_URL + arc.file
    if not path.is_file():
        if not download:
            raise DataError(f"missing Omniglot file {path}; download {url} to that path "
                            f"(or pass download=True / --set data.download=true)")
        _download(url, path, sha256=arc.sha256, check=lambda p: _check_structure(p, arc))
    if arc.sha256 is not None:
        verify_sha256(path, arc.sha256, hint=f"replace it with a fresh copy of {url}")
    else:
        _check_structure(path, arc)
    return path


def extract(name: str, cache_dir: str | os.PathLike, root: str | os.PathLike | None = None,
            download: bool = False) -> Path:
    """Verify archive ``name`` and unpack it safely (no member may escape) into ``cache_dir``."""
    return safe_extract_zip(archive_path(name, root, download), cache_dir)


# ------------------------------------------------------------------------------------------ decoding


def _decode_png(data: bytes, where: str = "an Omniglot image") -> torch.Tensor:
    """One PNG -> (105, 105) uint8 with ink = 1 (the files are black strokes on white).

    A file that does not decode, is not 105x105, or holds no ink (or only ink) is a :class:`DataError` naming it.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            a = np.asarray(im.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{where} is not a readable PNG ({type(e).__name__}); replace the archive with a fresh "
                        "copy") from None
    if a.shape != (NATIVE, NATIVE):
        raise DataError(f"{where} is {a.shape[1]}x{a.shape[0]} pixels, expected {NATIVE}x{NATIVE}; replace the "
                        "archive with a fresh copy")
    ink = a < 128
    if not 0 < int(ink.sum()) < ink.size:
        raise DataError(f"{where} holds {'no' if not ink.any() else 'only'} ink; replace the archive with a fresh "
                        "copy")
    return torch.from_numpy(ink.astype(np.uint8))


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Area-average ``(..., H, W)`` ink images to ``(..., size, size)`` float32 (identity at native size)."""
    x = images.float()
    if size == x.shape[-1]:
        return x
    lead = x.shape[:-2]
    y = torch.nn.functional.interpolate(x.reshape(-1, 1, *x.shape[-2:]), size=(size, size), mode="area")
    return y.reshape(*lead, size, size)


def _cache_file(path: Path) -> Path:
    """Decoded-tensor cache next to the user's other caches (``$ADAPTLAB_CACHE``, default ~/.cache/adaptlab),
    named by the archive's SHA-256 so a changed archive never meets a stale cache."""
    from adaptlab.data._archive import sha256_file
    from adaptlab.io import cache_root

    return cache_root() / f"omniglot-{sha256_file(path)[:20]}.pt"


def _read_characters(path: Path) -> tuple[torch.Tensor, list[str], list[str]]:
    """All characters of a background/evaluation zip: (C, 20, 105, 105) uint8, alphabets, characters."""
    key = (str(path.resolve()), "chars")
    cache = _cache_file(path)
    if key not in _DECODED and cache.is_file():
        try:
            saved = torch.load(cache, weights_only=True)
            _DECODED[key] = (saved["images"], list(saved["alphabets"]), list(saved["characters"]))
        except Exception:  # noqa: BLE001 - an unreadable cache is rebuilt from the verified archive
            pass
    if key not in _DECODED:
        groups: dict[tuple[str, str], list[tuple[str, torch.Tensor]]] = {}
        with zipfile.ZipFile(path) as zf:
            for n in sorted(zf.namelist()):
                parts = n.split("/")
                if not n.endswith(".png") or len(parts) != 4:
                    continue
                image = _decode_png(zf.read(n), f"{path.name}:{n}")
                groups.setdefault((parts[1], parts[2]), []).append((parts[3], image))
        counts = {len(v) for v in groups.values()}
        if counts != {20}:
            raise DataError(f"corrupt archive {path}: characters with {sorted(counts)} drawings, expected 20")
        keys = sorted(groups)
        images = torch.stack([torch.stack([im for _, im in sorted(groups[k])]) for k in keys])
        _DECODED[key] = (images, [k[0] for k in keys], [k[1] for k in keys])
        try:                                               # best effort: a read-only home just decodes again
            from adaptlab.io import atomic_write_bytes

            buf = io.BytesIO()
            torch.save({"images": images, "alphabets": _DECODED[key][1], "characters": _DECODED[key][2]}, buf)
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(cache, buf.getvalue())
        except OSError:
            pass
    return _DECODED[key]


# ------------------------------------------------------------------------------------------ characters


@dataclass(frozen=True)
class CharacterSet:
    """Characters x drawers images with their alphabet and character names.

    Attributes:
        images: (C, 20, S, S) float32, ink = 1.
        alphabets: length-C alphabet name of each class.
        characters: length-C character name (``character07``, or ``character07/rot90`` for rotations).
    """

    images: torch.Tensor
    alphabets: tuple[str, ...]
    characters: tuple[str, ...]

    @property
    def alphabet_names(self) -> list[str]:
        return sorted(set(self.alphabets))

    def __len__(self) -> int:
        return self.images.shape[0]

    def select_alphabets(self, names) -> CharacterSet:
        """The classes of the given alphabets only (unknown names are a DataError)."""
        names = set(names)
        unknown = names - set(self.alphabets)
        if unknown:
            raise DataError(f"unknown alphabet(s) {sorted(unknown)}; this set has {self.alphabet_names}")
        idx = [i for i, a in enumerate(self.alphabets) if a in names]
        return CharacterSet(self.images[idx], tuple(self.alphabets[i] for i in idx),
                            tuple(self.characters[i] for i in idx))

    def with_rotations(self, angles=(0, 90, 180, 270)) -> CharacterSet:
        """Each character rotated by each multiple of 90 degrees becomes a class of its own (4C classes).

        Rotated copies keep their alphabet, so alphabet splits stay leak-free.
        (Santoro et al. 2016; Vinyals et al. 2016 use this to augment the background classes.)
        """
        if any(a % 90 for a in angles):
            raise DataError(f"rotation angles {angles} must be multiples of 90")
        ims = torch.cat([torch.rot90(self.images, a // 90, dims=(-2, -1)) for a in angles])
        alph = tuple(a for _ in angles for a in self.alphabets)
        chars = tuple(c if ang == 0 else f"{c}/rot{ang}" for ang in angles for c in self.characters)
        return CharacterSet(ims, alph, chars)

    def labelled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened ``(x (C*20, 1, S, S), y (C*20,))`` for :class:`~adaptlab.tasks.episodes.EpisodeSampler`."""
        c, d = self.images.shape[:2]
        x = self.images.reshape(c * d, 1, *self.images.shape[-2:])
        return x, torch.arange(c).repeat_interleave(d)


def load_characters(name: str = "small1", size: int = 28, root: str | os.PathLike | None = None,
                    download: bool = False) -> CharacterSet:
    """Load a character set (one of :data:`SETS`) as a :class:`CharacterSet`.

    ``"small"`` is the union of the two minimal sets with the characters present in both (Greek and Latin,
    byte-identical drawings) kept once: 8 alphabets, 242 characters.

    Args:
        name: ``small1``, ``small2``, ``small``, ``background`` or ``evaluation``.
        size: image side: 28 (area-averaged) or 105 (native); any 1..105 works.
        root: folder holding the archives (default ``$ADAPTLAB_DATA/omniglot``).
        download: fetch missing archives from the official repository first.
    """
    if name not in SETS:
        raise DataError(f"unknown Omniglot set {name!r}; expected one of {', '.join(SETS)}")
    if not 1 <= size <= NATIVE:
        raise DataError(f"image size {size} is invalid; expected 1..{NATIVE} (28 is standard, 105 native)")
    if name == "small":
        a = load_characters("small1", NATIVE, root, download)
        b = load_characters("small2", NATIVE, root, download)
        return _resized(_union(a, b), size)
    images, alph, chars = _read_characters(archive_path(name, root, download))
    return CharacterSet(resize(images, size), tuple(alph), tuple(chars))


#: The public name of :func:`load_characters` (``adaptlab.data.load_omniglot("small1", size=28)``).
load_omniglot = load_characters


def _resized(cs: CharacterSet, size: int) -> CharacterSet:
    return replace(cs, images=resize(cs.images, size))


def _union(a: CharacterSet, b: CharacterSet) -> CharacterSet:
    """Classes of ``a`` then those of ``b`` not already in ``a`` (same alphabet/character and drawings)."""
    seen = {(al, ch): i for i, (al, ch) in enumerate(zip(a.alphabets, a.characters))}
    keep = []
    for j, key in enumerate(zip(b.alphabets, b.characters)):
        i = seen.get(key)
        if i is None:
            keep.append(j)
        elif not torch.equal(a.images[i], b.images[j]):
            raise DataError(f"{key[0]}/{key[1]} differs between the two minimal sets; cannot deduplicate")
    return CharacterSet(torch.cat([a.images, b.images[keep]]), a.alphabets + tuple(b.alphabets[j] for j in keep),
                        a.characters + tuple(b.characters[j] for j in keep))


# ------------------------------------------------------------------------------------------ the 20 runs


@dataclass(frozen=True)
class OneShotRun:
    """One run of the original benchmark: classify each test image as one of 20 training images.

    Attributes:
        train: (20, S, S) float32 training images (one per class), in sorted file order (class01..class20).
        test: (20, S, S) float32 test images, item01..item20.
        answer: (20,) int64, index into ``train`` of each test item's class (from class_labels.txt).
    """

    train: torch.Tensor
    test: torch.Tensor
    answer: torch.Tensor


def load_runs(size: int = NATIVE, root: str | os.PathLike | None = None,
              download: bool = False) -> list[OneShotRun]:
    """The 20 runs of ``all_runs.zip`` (20-way 1-shot within an evaluation alphabet)."""
    path = archive_path("runs", root, download)
    key = (str(path.resolve()), "runs")
    if key not in _DECODED:
        runs = []
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for r in range(1, 21):
                pairs = [line.split() for line in zf.read(f"run{r:02d}/class_labels.txt").decode().splitlines()
                         if line.strip()]
                test_files = sorted(p[0] for p in pairs)
                train_files = sorted(p[1] for p in pairs)
                truth = dict(pairs)
                missing = [f for f in test_files + train_files if f not in names]
                if missing:
                    raise DataError(f"corrupt archive {path}: {missing[0]} is listed in class_labels.txt "
                                    "but absent")
                runs.append((torch.stack([_decode_png(zf.read(f), f) for f in train_files]),
                             torch.stack([_decode_png(zf.read(f), f) for f in test_files]),
                             torch.tensor([train_files.index(truth[f]) for f in test_files])))
        _DECODED[key] = runs
    return [OneShotRun(resize(tr, size), resize(te, size), ans) for tr, te, ans in _DECODED[key]]
