"""Run-directory artifacts: atomic writes (temp file + rename) and loaders that fail with a clear message."""

from __future__ import annotations

import hashlib

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policygradex.common.errors import PolicyGradExError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same directory, then rename: a crash never leaves half a file. The
    file gets the permissions a plain open() would give (0666 less the umask), not mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write(path, write)


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def _corrupt(path: Path, exc: Exception) -> PolicyGradExError:
    """One line whatever the reader raised: the first line of its message, at most 160 characters (torch's
    messages for a damaged checkpoint run over several lines and paragraphs)."""
    lines = str(exc).strip().splitlines()
    what = lines[0] if lines else ""
    what = what if len(what) <= 160 else what[:157] + "..."
    return PolicyGradExError(
        f"{path} is unreadable ({type(exc).__name__}: {what}); delete it to recompute that stage, "
        "or start a fresh run directory"
    )


def load_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise _corrupt(path, exc) from None


def load_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise _corrupt(path, exc) from None


def load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise _corrupt(path, exc) from None


def load_npz(path: Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an .npz file, or only those of ``keys`` that it holds (the others are not read)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files if keys is None or k in keys}
    except Exception as exc:
        raise _corrupt(path, exc) from None


def npz_holds(path: Path, key: str) -> bool:
    """Whether the .npz file at ``path`` has an array ``key``, from the zip's listing (no array is read); False when
    the file is unreadable (reading it says why)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return key in data.files
    except Exception:
        return False


def file_sha(path: Path) -> str:
    """sha256 of a file's bytes (theta_star.pt's pins the jobs made from it)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
