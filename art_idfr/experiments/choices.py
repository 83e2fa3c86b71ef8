"""
Choice lists of the experiment side that the library does not (yet) publish in :mod:`art_idfr._names`. Plain tuples,
no imports: the command line builds its parser from them without loading torch or ART.

``ID_LOSSES`` and ``RESIDUAL_HEADS`` duplicate ``art_idfr.denoiser.LOSSES`` / ``RESIDUAL_HEADS`` (that module imports
torch); once the library defines them in ``art_idfr._names`` they should be imported from there instead.
"""

#: ``IDFRDenoiser(loss=...)``: Eq. 3 cross-entropy, feature-space distance, or both
ID_LOSSES = ("ce", "feature", "both")

#: ``IDFRDenoiser(residual_head=...)``: last U-Net layer (zero-initialised linear conv, or conv + BN + ReLU)
RESIDUAL_HEADS = ("linear", "bn_relu")

#: ``art_idfr.experiments.models.train_model(optimizer=...)``
OPTIMIZERS = ("sgd", "adam")

#: ``EvalConfig.device``
DEVICES = ("auto", "cpu", "cuda")
