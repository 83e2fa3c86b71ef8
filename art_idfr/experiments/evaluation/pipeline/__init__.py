"""
The steps before an evaluation: data, target and surrogate training (checkpointed, resumable), IDFR fitting, Fast AT
training, and saving / loading each of them.

Folder layouts written here (all weights with ``torch.save(state_dict)``, read back with
``torch.load(weights_only=True)``):

* model folder (target, surrogate, Fast AT): ``model.pt`` (state dict), ``model.json`` (architecture, dataset, seed,
  accuracies, training settings), ``checkpoints/epoch_NNNN.pt`` (per-epoch, used to resume).
* IDFR folder: ``denoiser.pt`` (:meth:`IDFRDenoiser.save`), ``restorer.pt`` (:meth:`FeatureRestorer.save`),
  ``idfr.json`` (settings, the target it was fitted for, accuracies); its ``adaptive/`` (the ``idfr_adaptive`` fit:
  ``denoiser.pt``, ``adaptive.json``, ``restorer.pt`` when the FR was trained too) and ``inner_adaptive/`` (the
  ``idfr_inner`` fit: the same plus ``inner.pt``, :meth:`InnerRestorer.save`).

Under ``torchrun`` (:mod:`art_idfr.training.distributed`): a model trained here (target, surrogate, extra AE
source, Fast AT) is trained by rank 0 alone, exactly as in a single process, while the other ranks wait (up to the
process group's timeout) and then receive its weights and metadata by broadcast (:func:`_trained_on_main`); the ID
and FR are fitted by all ranks together (Algorithms 1 and 2 under DDP, see ``IDFRDenoiser.fit``), and so is the
adaptive ID. Files are written by rank 0 only; every rank must see the same folders (one machine or a shared file
system), since each reads a cached fit or model itself.

The steps live in the modules of this package, every name re-exported here: :mod:`.prepare` (data, threads),
:mod:`.networks` (target, surrogate, extra AE sources, model folders), :mod:`.idfr` (the IDFR fit and folder),
:mod:`.adaptive` (the adaptive ID's fit, and the opt-in ``idfr_inner`` fit with restorers inside the target),
:mod:`.fast_at` (the Fast AT baseline) and :mod:`.baselines` (the paper's
purification baselines, opt-in defences).
"""
# besides __all__, the file names and the helpers that tests and benchmarks import from here stay importable
from art_idfr._utils import seeded
from art_idfr.experiments.evaluation.pipeline.prepare import (
    PreparedData,
    data_settings,
    flush_denormals,
    limit_threads,
    prepare_data,
    set_up_cpu,
)
from art_idfr.experiments.evaluation.pipeline.networks import (
    MODEL_FILE,
    MODEL_META,
    _source_settings,
    load_model_dir,
    save_model_dir,
    train_network,
)
from art_idfr.experiments.evaluation.pipeline.idfr import (
    DENOISER_FILE,
    IDFR_META,
    RESTORER_FILE,
    _idfr_settings,
    fit_idfr,
    load_idfr,
)
from art_idfr.experiments.evaluation.pipeline.adaptive import (
    ADAPTIVE_META,
    ADAPTIVE_RESUME,
    INNER_DIR,
    INNER_FILE,
    fit_adaptive,
    fit_inner_adaptive,
    load_adaptive_fit,
    load_inner_adaptive_fit,
)
from art_idfr.experiments.evaluation.pipeline.fast_at import make_fbf_trainer, train_fast_at
from art_idfr.experiments.evaluation.pipeline.baselines import train_baselines

__all__ = [
    "PreparedData",
    "prepare_data",
    "data_settings",
    "seeded",
    "limit_threads",
    "flush_denormals",
    "set_up_cpu",
    "train_network",
    "save_model_dir",
    "load_model_dir",
    "fit_idfr",
    "load_idfr",
    "train_fast_at",
    "fit_adaptive",
    "load_adaptive_fit",
    "fit_inner_adaptive",
    "load_inner_adaptive_fit",
    "make_fbf_trainer",
    "train_baselines",
]
