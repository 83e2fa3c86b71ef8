"""
The resume file of a long training run (used by :class:`~art_idfr.training.adaptive.AdaptiveDenoiserTrainer`): the
whole state of a fit in progress — weights, optimizer, learning-rate schedule, random generators, history, the best
epoch so far and the position inside the current epoch — written atomically every few optimizer steps, so that a
run cut off (a session limit, a preempted job, a device lease running out) continues where it stopped instead of
starting over.

The file is read with ``torch.load(weights_only=True)``: tensors and plain containers only, so reading it never runs
code. It carries a format tag and the run's *fingerprint* (settings, a digest of the training data and of the
starting weights); a file written by another run is refused with the differences named, never silently resumed.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

import torch

from art_idfr._utils import digest, json_clean  # noqa: F401  (digest: re-exported, its old home)

FORMAT = "art-idfr-resume/1"


class ResumeFile:
    """
    One run's resume file at ``path``, tied to ``fingerprint`` (a JSON-able dict: whatever must match for the saved
    state to be this run's). :meth:`save` writes the state (rank 0 only under ``torch.distributed``), :meth:`load`
    returns it or ``None`` when there is no file, :meth:`remove` deletes it once the run has finished.
    """

    def __init__(self, path: str, fingerprint: Dict[str, Any]) -> None:
        self.path = str(path)
        self.fingerprint = json_clean(fingerprint)

    def load(self) -> Optional[Dict[str, Any]]:
        """
        The saved state, or ``None`` when there is no file.

        :raises ValueError: the file is unreadable, not a resume file, or another run's (settings, data or starting
            weights differ); the message names the file to delete to start afresh.
        """
        if not os.path.isfile(self.path):
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated, not a torch file, or pickled code refused by weights_only
            raise ValueError(f"{self.path} is not a readable resume file ({err}); delete it to start afresh.") from err
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{self.path} is not an art-idfr resume file (format tag "
                             f"{payload.get('format') if isinstance(payload, dict) else None!r}, expected {FORMAT!r}).")
        saved = payload.get("fingerprint", {})
        diff = {k: (saved.get(k), v) for k, v in self.fingerprint.items() if saved.get(k) != v}
        diff |= {k: (v, None) for k, v in saved.items() if k not in self.fingerprint}
        if diff:
            raise ValueError(f"{self.path} belongs to another run; it differs in (saved, this run): {diff}. Delete it "
                             "(or pass another path) to start afresh.")
        return payload["state"]

    def save(self, state: Dict[str, Any]) -> None:
        """Write ``state`` atomically (a temporary file renamed over the old one); under DDP only rank 0 writes."""
        from art_idfr.training import distributed as ddp

        if not ddp.is_main_process():
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".tmp"
        torch.save({"format": FORMAT, "fingerprint": self.fingerprint, "state": state}, tmp)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        """Delete the file (the run it belongs to has finished); rank 0 only under DDP."""
        from art_idfr.training import distributed as ddp

        if ddp.is_main_process() and os.path.exists(self.path):
            os.remove(self.path)
