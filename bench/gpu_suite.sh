#!/usr/bin/env bash
# Everything this project measures on a GPU machine, in one go (the GPU machines here are lent for
# minutes at a time). Usage, from the repo root: bash bench/gpu_suite.sh OUT_DIR [part ...]
#   parts: tests train recipes ops compile-dcgan compile-progan compile-biggan64 graphs graphs-bf16 check profile submission reference png imports eval kernel kernel-graphs
#   (default: tests train submission)
# Compiling BigGAN takes minutes (about 2.5 on an H100): run the compile-* parts, graphs and graphs-bf16 in
# calls of their own.
# Needs torch with CUDA, and pytorch-fid importable (on a machine without it: install its wheel first).
# Still unmeasured on a GPU (BENCHMARKS.md), in order of need, one call each: compile-dcgan; compile-progan;
# compile-biggan64; submission png imports (generate's steps, the whole score with eigh end to end, what
# imports and CUDA start cost); tests; kernel-graphs.
set -uo pipefail
out=${1:?usage: bash bench/gpu_suite.sh OUT_DIR [tests|train|recipes|ops|compile-dcgan|compile-progan|compile-biggan64|graphs|graphs-bf16|check|profile|submission|reference|png|imports|eval|kernel|kernel-graphs ...]}; shift
parts=${*:-tests train submission}
known=" tests train recipes ops compile-dcgan compile-progan compile-biggan64 graphs graphs-bf16 check profile submission reference png imports eval kernel kernel-graphs "
for part in $parts; do  # a typo must not surface after minutes of borrowed GPU time on the parts before it
  [[ $known == *" $part "* ]] || { echo "unknown part: $part; known parts:$known" >&2; exit 2; }
done
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
$py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$out/gpu.txt"
for part in $parts; do
  echo "=== $part $(date -u +%T)"
  case $part in
    tests)  # the suite on this torch and CUDA; tests needing DVC, dvclive or the kaggle client skip where absent
      timeout 480 $py -m pytest -q -p no:cacheprovider --ignore tests/test_dvc.py \
        2>&1 | tail -40 | tee "$out/tests.log" ;;
    train)
      $py bench/train_bench.py --defaults --models dcgan progan biggan --batch 64 128 --precision fp32 bf16 \
        --steps 30 --warmup 5 --json "$out/train_bench.json" 2>&1 | tee "$out/train_bench.log" ;;
    recipes)  # every recipe's train section as it is: seconds per step, and the hours its epochs take at that speed
      $py bench/train_bench.py --recipes first-place second-place third-place fifth-place dcgan progan ours \
        --precision fp32 --steps 20 --warmup 5 --json "$out/recipes.json" 2>&1 | tee "$out/recipes.log" ;;
    ops)  # operators per step (launch count proxy; the same on any device)
      for m in biggan dcgan progan; do $py bench/count_ops.py --model $m --gpu-adam --top 0; done 2>&1 \
        | tee "$out/ops.log" ;;
    graphs|graphs-bf16)  # torch.compile with CUDA graphs (reduce-overhead): the launch-bound BigGAN step's best
      # hope; one precision per part, as one compile of BigGAN takes minutes
      prec=fp32; [ "$part" = graphs-bf16 ] && prec=bf16
      $py bench/train_bench.py --defaults --models biggan --batch 128 --precision $prec --compile on \
        --compile-mode reduce-overhead --steps 30 --warmup 5 --json "$out/train_$part.json" 2>&1 \
        | grep -v "^W" | tee "$out/train_$part.log" ;;
    check)  # the fastest configuration (bf16, CUDA graphs) trains like the eager step: same seed, loss by loss
      $py bench/compile_check.py --model biggan --batch 128 --precision bf16 --compile-mode reduce-overhead \
        --steps 12 2>&1 | grep -v "^W" | tee "$out/compile_check.log" ;;
    compile-dcgan|compile-progan|compile-biggan64)  # the eager grid of "train", compiled with CUDA graphs:
      # 4 compiles per part (BigGAN at batch 128: graphs, graphs-bf16)
      model=${part#compile-}; batches="64 128"
      [ "$model" = biggan64 ] && model=biggan && batches=64
      $py bench/train_bench.py --defaults --models $model --batch $batches --precision fp32 bf16 --compile on \
        --compile-mode reduce-overhead --steps 30 --warmup 5 --json "$out/train_$part.json" 2>&1 \
        | grep -v "^W" | tee "$out/train_$part.log" ;;
    submission)  # generate, validate, features, the whole score (score.frechet: eigh, the default); then the
      # score's phases with eigh on the same zip and cached reference statistics
      $py bench/submission_bench.py --device cuda --networks standin inception --feature-images 5000 --full-score \
        --work /tmp/submission_bench 2>&1 | grep -v WARNING | tee "$out/submission_bench.log"
      # (a zip of noise: random-weight G's near-identical images have a singular covariance, and eigh would
      # hand it to sqrtm; noise has full-rank features, as a trained G's have)
      $py bench/submission_bench.py --device cuda --zip /tmp/submission_bench/images.zip --networks standin \
        --feature-images 100 --no-math --phases inception --noise-submission \
        --frechet eigh --work /tmp/submission_bench 2>&1 | grep -v WARNING | tee "$out/score_phases_eigh.log" ;;
    reference)  # the score against cached statistics of 20,580 photos, less the features, on this host's cores
      $py bench/reference_bench.py --device cuda --skip-build --out "$out/reference_bench.json" 2>&1 \
        | tee "$out/reference_bench.log" ;;
    png)  # PNG encoding threads on this host (images.codec_threads uses 4); a shorter GIL switch interval;
      # forked processes (no shared GIL)
      { $py bench/png_threads.py 1 4 8 16 4 8; $py bench/png_threads.py 4 8 16 --switch-interval 0.0005
        $py bench/png_threads.py 4 8 16 4 --processes; } 2>&1 | tee "$out/png_threads.log" ;;
    imports)  # what a stage pays before any work: torch, the stage modules, torchvision (pytorch-fid's
      # Inception; it brings torch._dynamo), CUDA start; each in fresh processes
      $py bench/import_times.py --runs 3 --json "$out/import_times.json" 2>&1 | tee "$out/import_times.log" ;;
    profile)  # wall time against GPU kernel time of one BigGAN step (launch-bound or not)
      $py bench/profile_train.py --model biggan --batch 128 --precision fp32 --rows 12 2>&1 | cut -c1-200 \
        | tee "$out/profile.log" ;;
    kernel)  # the built Kaggle kernel on a fake /kaggle with the demo data, on this GPU and torch
      PYTHON=$py bash scripts/kernel_smoke.sh --set generate.n=10000 2>&1 | grep -v "it/s]" | tail -30 \
        | tee "$out/kernel.log" ;;
    kernel-graphs)  # the same, training with CUDA graphs in bf16 (the fastest setting): the whole loop with
      # logging, sample grids, EMA and checkpoints around the compiled step, not train_step alone
      PYTHON=$py bash scripts/kernel_smoke.sh --set train.compile=true --set train.compile_mode=reduce-overhead \
        --set train.precision=bf16 2>&1 | grep -v "it/s]" | grep -v "^W" | tail -30 | tee "$out/kernel_graphs.log" ;;
    eval)  # what the in-training MiFID (Inception, every 5000 steps) adds to the 1st-place BigGAN run
      $py bench/eval_bench.py --defaults --device cuda --batch 32 --network inception \
        --json "$out/eval_bench.json" 2>&1 | grep -v "it/s]" | tee "$out/eval_bench.log" ;;
    *) echo "unknown part: $part (add it to 'known' above and to the usage)" >&2; exit 2 ;;
  esac
done
echo "=== done $(date -u +%T)"
