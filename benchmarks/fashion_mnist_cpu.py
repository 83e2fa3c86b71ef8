"""
Fashion-MNIST at CPU scale: the paper's comparison (Tables 1-4 at our scale), with the paper's own baselines.

    sudo apt-get install -y dataset-fashion-mnist     # the IDX files, once
    python benchmarks/fashion_mnist_cpu.py            # 48 min on 2 idle CPU cores from scratch (goal: 60 min)

Full Fashion-MNIST (60k train / 10k test from /usr/share/datasets/fashion-mnist), a small CNN target and an
independently trained surrogate of another width and seed for the black-box AEs; ID + FR fitted on ART FGSM/BIM AEs
at 4/255, 8/255 and 32/255; the defences none, ID, ID+FR, FeatureSqueezing, JPEG 25/50/75, TotalVarMin,
SpatialSmoothing, Fast AT and (issue 42) the paper's baselines ComDefend, NRP, ADP and SOAP, each trained here
(`art_idfr.experiments.baselines`; ComDefend / NRP / ADP on the ID's 4,000 training images for their CPU-preset
epochs, 20 / 5 / 20, chosen on the validation split: benchmarks/NOTES.md; SOAP's classifier with its rotation head
on the whole training set, 2 epochs annealed to 0, one purification step), under the black-box, gray-box, adaptive white-box
(BPDA where a defence has no gradient, EOT over random draws where it is randomised, as the table says) and query
threat models, the paper's attacks FGSM/CW/BIM at eps 4/8/16/32 (/255), 1,000 test images (white-box on 100 and
query on 50 of them, `cifar10_cpu`'s scale), with the gradient-masking checks (also through all four baselines).

The adaptive ID+FR (not in the paper) and AutoAttack through the defences live in `fashion_mnist_adaptive.py` and
`fashion_mnist_inner.py`, which reuse the models this benchmark caches (`MODEL_ARGS`). Time: 2,864 s (48 min) from
scratch on 2 idle cores, fits 1,288 s and cells 1,555 s; the four baselines' fits and cells 1,561 s of it (`python
benchmarks/run_times.py runs/fashion_mnist_cpu`; benchmarks/NOTES.md, "`fashion_mnist_cpu` with the new SOAP preset
and the one-pass Square"). Two torch threads:
give it both cores of a 2-core machine to itself (on a machine that is busy with something else, pass `--threads 1`:
oversubscribed threads are many times slower). Reports go to benchmarks/results/fashion_mnist_cpu/.
"""
import sys

from _run import run

#: the models but the adaptive ID: target, surrogate, ID + FR (Algorithm 1 and 2), Fast AT (shared with
#: fashion_mnist_adaptive.py, which reuses the models this benchmark caches and has its own, later adaptive recipe)
MODEL_ARGS = [
    "--preset", "cpu", "--dataset", "fashion_mnist_idx", "--seed", "0", "--threads", "2",
    "--model", "small_cnn", "--width", "1.0", "--target-epochs", "4",
    "--surrogate-model", "small_cnn", "--surrogate-width", "0.5", "--surrogate-epochs", "3",
    "--id-width", "0.5", "--id-epochs", "4", "--fr-epochs", "10", "--fit-n", "4000", "--id-identity-weight", "10",
    "--idfr-eps", "4/255,8/255,32/255", "--fast-at-epochs", "2", "--fast-at-eps", "16/255",
]
#: the paper's defences, Fast AT and the paper's four purification baselines (issue 42), in table order
DEFENCES = "none,id,idfr,feature_squeezing,jpeg25,jpeg50,jpeg75,tvm,spatial_smoothing,fast_at,comdefend,nrp,adp,soap"
ARGS = MODEL_ARGS + [
    # cifar10_cpu's scale (issue 42's time goal): 1,000 test images (one s.e. <= 1.6 points), white-box and the
    # masking checks on 100 of them, query on 50; at 2,000 / 200 / 100 a run from scratch was ~6 h of one thread, two
    # thirds of it the four baselines' white-box, query and masking cells (benchmarks/NOTES.md)
    "--eps", "4/255,8/255,16/255,32/255", "--test-size", "1000", "--eval-n", "1000",
    "--whitebox-n", "100", "--query-n", "50", "--query-iter", "50",
    "--defences", DEFENCES, "--attacks", "fgsm,cw,bim", "--sanity-square-iter", "1000",
    # the gradient-masking checks also through the baselines' white-box rows (BPDA for ComDefend and SOAP, exact for
    # NRP, EOT for ADP)
    "--sanity-defences", "none,id,idfr,fast_at,comdefend,nrp,adp,soap",
    # SOAP's purification radius 8/255, not the grey-scale default 0.1: chosen on the validation split (a SOAP fitted
    # on the training split minus validation; 2,000 images; the mean of clean, FGSM 16/255 and BIM 8/255
    # transferred): none 82.7, 0.02 83.8, 8/255 84.2, 0.05 83.9, 0.1 82.8 (benchmarks/NOTES.md). A test-time
    # setting: the cached fit is reused
    "--baselines-soap-eps", "8/255",
    # SOAP: one purification step and 2 epochs annealed to 0 instead of 5 steps and 4 constant-rate epochs, for a fifth
    # of its cells' time and half its fit, level on the same validation mean (4 epochs: 5 steps 83.8, 2 steps 83.5,
    # 1 step 83.6, none 82.5; 2 cosine epochs, 1 step: 83.2; 2 constant epochs: 79.6-80.0; benchmarks/NOTES.md)
    "--baselines-soap-steps", "1", "--baselines-soap-epochs", "2", "--baselines-soap-lr-schedule", "cosine",
]

if __name__ == "__main__":
    sys.exit(run("fashion_mnist_cpu", ARGS))
