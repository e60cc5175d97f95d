"""Faults that tests inject into training."""

from __future__ import annotations


def poison_dense_ae_loss(monkeypatch, at_call: int = 20) -> None:
    """Make dense-ae's ``at_call``-th training loss NaN (call 20: inside the second epoch at 16
    steps an epoch, i.e. step 19)."""
    from aekit.models.dense_ae import DenseAE

    original = DenseAE.loss
    calls = {"n": 0}

    def poisoned(self, batch, out):
        losses = original(self, batch, out)
        if self.training:
            calls["n"] += 1
            if calls["n"] == at_call:
                losses.total = losses.total * float("nan")
        return losses

    monkeypatch.setattr(DenseAE, "loss", poisoned)
