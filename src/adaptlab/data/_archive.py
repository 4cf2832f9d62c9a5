"""Archive helpers shared by the dataset modules: SHA-256 checks, safe zip extraction, verified download.

Three rules keep local data trustworthy:

* a file whose SHA-256 is pinned is checked before use; a mismatch is a :class:`DataError` naming the file,
  the expected and the actual digest;
* extraction refuses any member that would land outside its target directory (absolute names, ``..``
  components, drive letters, symbolic links) *before* writing anything ("zip slip");
* a download goes to a temporary file next to its destination and is moved into place only after its
  checksum (or a caller-given structural check) passed, so a broken transfer never leaves a bad file.

Example::

    >>> import tempfile, zipfile, pathlib
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> with zipfile.ZipFile(tmp / "a.zip", "w") as z:
    ...     z.writestr("alphabet/char.txt", "ink")
    >>> sha256_file(tmp / "a.zip") == sha256_file(tmp / "a.zip")   # hex digest, read in chunks
    True
    >>> _ = safe_extract_zip(tmp / "a.zip", tmp / "out")
    >>> (tmp / "out" / "alphabet" / "char.txt").read_text()
    'ink'
    >>> with zipfile.ZipFile(tmp / "evil.zip", "w") as z:
    ...     z.writestr("../escape.txt", "x")
    >>> safe_extract_zip(tmp / "evil.zip", tmp / "out2")
    Traceback (most recent call last):
    ...
    adaptlab.errors.DataError: ...
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from adaptlab.errors import DataError

_CHUNK = 1 << 20
_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> hex digest, per process


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, streamed in 1 MiB chunks and memoised per (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def verify_sha256(path: str | os.PathLike, expected: str, hint: str = "") -> None:
    """Raise DataError unless ``path`` exists and its SHA-256 equals ``expected``.

    Args:
        path: the file to check.
        expected: lower-case hex digest.
        hint: appended to the message (e.g. how to obtain a good copy).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"missing file {p}{'; ' + hint if hint else ''}")
    actual = sha256_file(p)
    if actual != expected.lower():
        raise DataError(f"corrupt file {p}: SHA-256 is {actual}, expected {expected}"
                        f"{'; ' + hint if hint else ''}")


def _member_target(target: Path, info: zipfile.ZipInfo) -> Path:
    """Where ``info`` would be written under ``target``; DataError if that is outside it or a link."""
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    mode = info.external_attr >> 16
    bad = (name.startswith("/") or ".." in parts or (parts and ":" in parts[0]) or not parts
           or stat.S_ISLNK(mode))
    dest = (target / Path(*parts)).resolve() if parts else target
    if bad or not dest.is_relative_to(target):
        raise DataError(f"refusing to extract unsafe archive member {info.filename!r}: it would write outside "
                        f"{target} (absolute path, '..' component or link)")
    return dest


def safe_extract_zip(zip_path: str | os.PathLike, target_dir: str | os.PathLike) -> Path:
    """Extract a zip into ``target_dir``, refusing the whole archive if any member escapes it.

    Every member is checked before the first byte is written. Returns the resolved target directory.

    Raises:
        DataError: the archive is unreadable, or a member is absolute, contains ``..`` or is a symlink.
    """
    target = Path(target_dir).resolve()
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
            dests = [_member_target(target, i) for i in infos]  # validate everything first
            target.mkdir(parents=True, exist_ok=True)
            for info, dest in zip(infos, dests):
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    for chunk in iter(lambda: src.read(_CHUNK), b""):  # noqa: B023 - consumed at once
                        out.write(chunk)
    except zipfile.BadZipFile as e:
        raise DataError(f"corrupt archive {zip_path}: {e}; delete it and fetch it again") from None
    return target


def download(url: str, dest: str | os.PathLike, sha256: str | None = None,
             check: Callable[[Path], None] | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying it before it is moved into place.

    Args:
        url: an https URL.
        dest: final path; its folder is created.
        sha256: expected digest; if given, a mismatch deletes the download and raises DataError.
        check: extra verification ``check(tmp_path)`` raising DataError (used when no digest is pinned).
        timeout: socket timeout in seconds.

    Returns:
        ``dest`` as a Path.
    """
    import urllib.request

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                out.write(chunk)
        if sha256 is not None:
            verify_sha256(tmp, sha256, hint=f"downloaded from {url}")
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, dest)
    except OSError as e:
        raise DataError(f"download of {url} failed ({e}); put the file at {dest} by hand") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
