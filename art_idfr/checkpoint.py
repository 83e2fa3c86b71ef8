"""
One-file checkpoints for the IDFR components: format tag + format version + the writer's art-idfr version + kind +
JSON-able config + state dict.

Files are written with ``torch.save`` and read back with ``torch.load(weights_only=True)``, which unpickles only
tensors and plain containers: loading a file never executes code from it. Anything that is not a well-formed
art-idfr checkpoint of the expected kind raises ``ValueError`` with the reason; a file written by a newer art-idfr
that this one cannot read (a newer format, or a config or weights this version does not know) names both versions.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from art_idfr._utils import check_device_type, json_clean
from art_idfr._version import __version__

FORMAT = "art-idfr"
VERSION = 1


def save(path: str, kind: str, config: Dict[str, Any], state_dict: Dict[str, torch.Tensor], extra=None) -> None:
    """
    Write one checkpoint file (creating parent folders). Under ``torch.distributed`` (world size > 1) only rank 0
    writes, and every rank then waits at a barrier: call it on every rank (the weights are the same everywhere
    after a distributed ``fit``), never inside ``if rank == 0``, which would leave rank 0 at the barrier alone.
    """
    from art_idfr.training import distributed

    if distributed.is_main_process():
        _write(path, kind, config, state_dict, extra)
    distributed.barrier()


def _write(path: str, kind: str, config: Dict[str, Any], state_dict: Dict[str, torch.Tensor], extra=None) -> None:
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "art_idfr_version": __version__,
        "kind": kind,
        "config": json_clean(config),
        "extra": json_clean(extra or {}),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    torch.save(payload, path)


def load(path: str, kind: str) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor], Dict[str, Any]]:
    """
    Read a checkpoint written by :func:`save` and return ``(config, state_dict, extra)``.

    :raises FileNotFoundError: no such file.
    :raises ValueError: corrupt file, not an art-idfr checkpoint, another component's checkpoint, or a newer format.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt zip, truncated file, pickled code refused by weights_only, ...
        raise ValueError(f"{path} is not a readable art-idfr checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an art-idfr checkpoint (no '{FORMAT}' format tag).")
    version, writer = payload.get("version"), payload.get("art_idfr_version")
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(f"{path} has checkpoint format version {version!r}{_written_by(writer)}; this is art-idfr "
                         f"{__version__}, which reads formats up to {VERSION}: upgrade art-idfr to read it.")
    if payload.get("kind") != kind:
        raise ValueError(f"{path} holds a {payload.get('kind')!r} checkpoint, not a {kind!r} one.")
    config, state_dict = payload.get("config"), payload.get("state_dict")
    if not isinstance(config, dict) or not isinstance(state_dict, dict):
        raise ValueError(f"{path} is missing its config or weights.")
    if not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path}: weights must all be tensors.")
    extra = dict(payload.get("extra") or {})
    extra[WRITER_KEY] = writer if isinstance(writer, str) else None
    return config, state_dict, extra


#: the key of ``extra`` (as :func:`load` returns it) that holds the writer's art-idfr version (None: before 0.1.0's)
WRITER_KEY = "art_idfr_version"


def _written_by(writer: Any) -> str:
    return f" (written by art-idfr {writer})" if isinstance(writer, str) else ""


def _release(version: Any) -> Tuple[int, ...]:
    """``"1.2.3"`` → ``(1, 2, 3)`` (pre-release tags ignored); anything unreadable → ``()``."""
    parts = []
    for piece in str(version).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits or digits != piece[: len(digits)]:
            break
        parts.append(int(digits))
    return tuple(parts)


def newer_writer(extra: Dict[str, Any]) -> Optional[str]:
    """The writer's art-idfr version when it is newer than this one (from :func:`load`'s ``extra``), else None."""
    writer = extra.get(WRITER_KEY)
    return writer if isinstance(writer, str) and _release(writer) > _release(__version__) else None


def _mismatch(path: str, problem: str, err: Exception, extra: Optional[Dict[str, Any]]) -> ValueError:
    """The error for a file this version cannot read: ``problem`` and ``err``, and both versions for a newer writer."""
    newer = newer_writer(extra or {})
    if newer:
        return ValueError(f"{path} was written by art-idfr {newer}; this is art-idfr {__version__}, which cannot read "
                          f"it ({problem}: {err}): upgrade art-idfr to read it.")
    return ValueError(f"{path}: {problem}: {err}")


def construct(cls: type, config: Dict[str, Any], path: str, extra: Optional[Dict[str, Any]] = None) -> Any:
    """``cls(**config)`` for a component's ``load``, with a clear error (naming both versions for a newer writer)."""
    try:
        return cls(**config)
    except (TypeError, ValueError) as err:
        raise _mismatch(path, f"stored {cls.__name__} config is invalid", err, extra) from err


def load_state_dict(module: nn.Module, state_dict: Dict[str, torch.Tensor], path: str,
                    extra: Optional[Dict[str, Any]] = None) -> None:
    """``module.load_state_dict(strict=True)`` with a clear error when the weights do not fit the stored config."""
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise _mismatch(path, "weights do not match the stored configuration", err, extra) from err


def load_component(path: str, kind: str, device_type: Optional[str] = None
                   ) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor], Dict[str, Any]]:
    """:func:`load` for a component's ``load``: ``device_type`` (``"gpu"``/``"cpu"``), if given, overrides the stored
    one."""
    if device_type is not None:
        check_device_type(device_type)
    config, state_dict, extra = load(path, kind)
    if device_type is not None:
        config["device_type"] = device_type
    return config, state_dict, extra
