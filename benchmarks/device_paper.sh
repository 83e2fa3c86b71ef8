#!/usr/bin/env bash
# The command that ran benchmarks/cifar10_paper.py on a lent GPU machine (the `device` tool of our workplace), kept
# so the committed results say exactly how they were made. The machine has torch but not ART: ART and the two
# packages its AutoAttack imports travel as wheels in .whl/, the CIFAR-10 JPEG tarball in .devdata/ (both
# git-ignored). First a tiny smoke run of every stage on the GPU (SMOKE=0 skips it), then the benchmark under a time
# limit. Killed at the limit, the run leaves results.partial.{json,md} (the threat models it finished), and the same
# command run again on the still-warm machine reuses the trained models in runs/ and resumes the evaluation.
#   usage: [SMOKE=0] bash benchmarks/device_paper.sh [deadline in seconds from the start, default 570] [cifar10_paper.py args]
#   e.g.   SMOKE=0 bash benchmarks/device_paper.sh 585 --only vgg16_bn_cifar --idfr-eps 4/255,8/255,16/255
#          SMOKE=0 bash benchmarks/device_paper.sh 570 --adaptive-focus   (issue 15: the adaptive goal, five defences + idfr_inner)
#          SMOKE=1 bash benchmarks/device_paper.sh 570 --baselines        (issue 42: + ComDefend, NRP, ADP, SOAP; not run yet)
set -u
t0=$(date +%s)
DEADLINE=${1:-570}; shift || true
MODEL=resnet18_cifar; prev=""; RUN=cifar10_paper
for a in "$@"; do [ "$prev" = "--only" ] && MODEL=$a; [ "$a" = "--adaptive-focus" ] && RUN=cifar10_paper_adaptive
  [ "$a" = "--baselines" ] && RUN=cifar10_paper_baselines; prev=$a; done
SURROGATE=vgg16_bn_cifar; [ "$MODEL" = vgg16_bn_cifar ] && SURROGATE=resnet18_cifar
# the adaptive run's smoke: the adaptive paths (FR trained jointly; idfr_inner's restorers inside the target),
# AutoAttack and the masking checks on the GPU
SMOKE_FOCUS=""; [ $RUN = cifar10_paper_adaptive ] && SMOKE_FOCUS="--defences none,idfr,idfr_adaptive,idfr_inner,fast_at \
  --autoattack-defences none,idfr,idfr_adaptive,idfr_inner,fast_at \
  --threat-models white-box --attacks bim,autoattack --eps 8/255 --adaptive-train-restorer --adaptive-eps-warmup 0.3 \
  --adaptive-batch-size 64 --autoattack-restarts 1 --autoattack-square-iter 20"
# the baselines run's smoke: the four baselines' fits and their white-box gradients (BPDA, EOT) on the GPU
[ $RUN = cifar10_paper_baselines ] && SMOKE_FOCUS="--defences none,idfr,comdefend,nrp,adp,soap --threat-models white-box \
  --attacks bim --eps 8/255 --baselines-epochs 1 --baselines-fit-n 256 --baselines-soap-epochs 1"
case " $* " in *" --idfr-source-model "*) SMOKE_SOURCE="--idfr-source-model small_cnn --idfr-source-epochs 1";; *) SMOKE_SOURCE="";; esac
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 ART_IDFR_CACHE=/tmp/art_idfr_cache
DATA=.devdata/cifar10-jpeg.tar.gz
nvidia-smi -L
python3 -c "import torch, art; print('torch', torch.__version__, 'ART', art.__version__, torch.cuda.get_device_name())"
start=$(date +%s)
[ "${SMOKE:-1}" = 0 ] || python3 -m art_idfr.experiments.cli demo --preset tiny --dataset cifar10_jpeg --data-root $DATA --device cuda --quiet \
  --model $MODEL --width 0.25 --surrogate-model $SURROGATE --surrogate-width 0.25 $SMOKE_SOURCE \
  --idfr-eps 4/255,8/255 $SMOKE_FOCUS --out /tmp/smoke \
  > /tmp/smoke.log 2>&1 || { tail -60 /tmp/smoke.log; echo "SMOKE FAILED after $(( $(date +%s) - start )) s"; exit 1; }
echo "smoke run (SMOKE=${SMOKE:-1}) done in $(( $(date +%s) - start )) s"
LIMIT=$(( DEADLINE - ($(date +%s) - t0) ))
echo "benchmark time limit $LIMIT s"
timeout "$LIMIT" python3 benchmarks/cifar10_paper.py --device cuda --data-root $DATA --threads 8 "$@" \
  2> "$OUT/stderr.log"
status=$?
echo "benchmark exit status $status after $(( $(date +%s) - start )) s"
# at most 8 files come back: the reports when the run finished, else the finished threat models (results.partial.*)
R=runs/${RUN}_$MODEL
cp $R/console.log $R/idfr/adaptive/adaptive.json "$OUT/" 2>/dev/null
cp $R/idfr/inner_adaptive/adaptive.json "$OUT/inner_adaptive.json" 2>/dev/null
cp benchmarks/results/${RUN}_$MODEL/results.* benchmarks/results/${RUN}_$MODEL/*.png "$OUT/" 2>/dev/null \
  || cp $R/results.partial.* "$OUT/" 2>/dev/null
tr '\r' '\n' < "$OUT/stderr.log" | grep -a -v "^\s*$" | tail -c 200000 > "$OUT/stderr_tail.log"; rm -f "$OUT/stderr.log"
exit $status
