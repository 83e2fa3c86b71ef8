"""Resume files of long training runs: a cut adaptive fit continues to the same weights; other runs' files refused."""
import copy
import os
import pickle

import pytest
import torch

from art_idfr import FeatureRestorer, IDFRDenoiser
from art_idfr.training import adaptive
from art_idfr.training.adaptive import AdaptiveDenoiserTrainer
from art_idfr.training.resume import FORMAT, ResumeFile
from conftest import counted


@pytest.fixture(scope="module")
def start(trained_target, mnist_small):
    """An ID and a fitted FR to train jointly: the starting weights of every run here."""
    x_train, y_train, _, _ = mnist_small
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, batch_size=32, device_type="cpu", seed=0)
    fr = FeatureRestorer(nb_epochs=1, batch_size=64, device_type="cpu")
    fr.fit(x_train[:200], y_train[:200], classifier=trained_target, denoiser=den)
    return den, fr


def _fit(target, start, data, checkpoint=None, cut_after=None, monkeypatch=None, **kwargs):
    """A two-epoch joint fit with EMA and validation from copies of ``start``; optionally cut after ``cut_after``
    optimizer steps. Returns the trainer."""
    den, fr = copy.deepcopy(start[0]), copy.deepcopy(start[1])
    x, y, x_val, y_val = data
    if cut_after is not None:
        monkeypatch.setattr(adaptive._AdaptiveRun, "batch_loss",
                            counted(adaptive._AdaptiveRun.batch_loss, [], cut_after=cut_after))
    settings = dict(eps=0.1, max_iter=2, nb_epochs=2, batch_size=32, learning_rate=1e-2, trades_beta=1.0,
                    ema_decay=0.5)
    trainer = AdaptiveDenoiserTrainer(target, den, restorer=fr, train_restorer=True, **{**settings, **kwargs})
    trainer.fit(x, y, validation_data=(x_val, y_val), checkpoint=checkpoint, checkpoint_every=2)
    return trainer


@pytest.fixture
def data(mnist_small):
    x_train, y_train, x_val, y_val = mnist_small
    return x_train[:160], y_train[:160], x_val[:20], y_val[:20]  # 5 batches of 32 per epoch


def _state(trainer):
    return {**{"id." + k: v for k, v in trainer.denoiser.network.state_dict().items()},
            **{"fr." + k: v for k, v in trainer.restorer.network.state_dict().items()}}


def test_a_cut_run_resumes_to_the_same_weights(trained_target, start, data, tmp_path, monkeypatch):
    """Cut in the second epoch (after 7 of 10 steps; the file holds step 2 of epoch 2), then fit again with the same
    resume file: the ID, the joint FR and the history equal an uncut run's, and the file is gone."""
    path = str(tmp_path / "resume.pt")
    straight = _fit(trained_target, start, data)
    with pytest.raises(KeyboardInterrupt):
        _fit(trained_target, start, data, checkpoint=path, cut_after=7, monkeypatch=monkeypatch)
    saved = torch.load(path, weights_only=True)
    assert saved["format"] == FORMAT
    assert (saved["state"]["epoch"], saved["state"]["position"]["step"]) == (1, 2)
    monkeypatch.undo()
    steps = []
    monkeypatch.setattr(adaptive._AdaptiveRun, "batch_loss", counted(adaptive._AdaptiveRun.batch_loss, steps))
    resumed = _fit(trained_target, start, data, checkpoint=path)
    assert len(steps) == 3  # only the steps the cut run had not saved: it resumed, it did not start over
    expected, got = _state(straight), _state(resumed)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert resumed.history == straight.history and len(resumed.history) == 3  # epoch 0 (the start) and two epochs
    assert not os.path.exists(path)
    assert resumed.denoiser.training_info["seconds"] >= saved["state"]["seconds"]


def test_a_resume_file_of_another_run_is_refused(trained_target, start, data, tmp_path, monkeypatch):
    """Another ε, other data, or other starting weights: ValueError naming what differs; the file is left alone."""
    path = str(tmp_path / "resume.pt")
    with pytest.raises(KeyboardInterrupt):
        _fit(trained_target, start, data, checkpoint=path, cut_after=3, monkeypatch=monkeypatch)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="belongs to another run.*'eps'"):
        _fit(trained_target, start, data, checkpoint=path, eps=0.2)
    x, y, x_val, y_val = data
    with pytest.raises(ValueError, match="'data'"):
        _fit(trained_target, start, (x[::-1].copy(), y[::-1].copy(), x_val, y_val), checkpoint=path)
    other = (copy.deepcopy(start[0]), start[1])
    with torch.no_grad():
        next(other[0].network.parameters()).add_(1.0)
    with pytest.raises(ValueError, match="'start_weights'"):
        _fit(trained_target, other, data, checkpoint=path)
    assert os.path.exists(path)


class _Payload:
    ran = []

    def __reduce__(self):
        return (_Payload.ran.append, ("code ran",))


def test_a_resume_file_never_runs_code(tmp_path):
    """A pickle that would run code on load is refused with a clear error, and nothing ran; so is a foreign file."""
    path = tmp_path / "resume.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": FORMAT, "state": _Payload()}, f)
    with pytest.raises(ValueError, match="not a readable resume file"):
        ResumeFile(str(path), {}).load()
    assert _Payload.ran == []
    torch.save({"format": "something else"}, str(path))
    with pytest.raises(ValueError, match="not an art-idfr resume file"):
        ResumeFile(str(path), {}).load()
    assert ResumeFile(str(tmp_path / "absent.pt"), {}).load() is None


def test_checkpoint_every_must_be_positive(trained_target, mnist_small, tmp_path):
    x_train, y_train, _, _ = mnist_small
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, device_type="cpu")
    trainer = AdaptiveDenoiserTrainer(trained_target, den, eps=0.1, max_iter=1, nb_epochs=1)
    with pytest.raises(ValueError, match="checkpoint_every"):
        trainer.fit(x_train[:32], y_train[:32], checkpoint=str(tmp_path / "r.pt"), checkpoint_every=0)
