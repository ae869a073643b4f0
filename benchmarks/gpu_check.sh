#!/usr/bin/env bash
# widerl on a real GPU, as one short script for a lent GPU machine: what the suite's fake-CUDA
# check (tests/fake_cuda.py) cannot see.
#
#   benchmarks/gpu_check.sh prepare   # here, with package registries: wheels into .whl/
#   benchmarks/gpu_check.sh run       # there (no network): tests and benchmarks on CUDA
#
# The GPU machine's image has Python 3.12 with a CUDA PyTorch, numpy, click, rich, matplotlib,
# tensorboard, pytest and pandas, but not Gymnasium, MuJoCo or Stable-Baselines3: `prepare`
# downloads those as cp312 wheels (about 26 MB) into .whl/ (git-ignored), which the device
# tool must carry (`carry: [".whl"]`). `run` installs them into /tmp/site, puts src/ on
# PYTHONPATH (no build step: setuptools' build isolation needs the network) and writes
# everything it measures under $OUT (or ./gpu-check-results). Ray is not needed: only
# `--actors N` imports it. DEVICE=cpu runs the same steps on a CPU, to try the script itself
# (QUICK=1 makes every step tiny).
#
# What it runs, in order (each step's output in its own file under $OUT):
#   1. the CUDA tests: tests/run/test_devices.py (update numerics against the CPU, resets, the
#      memory check, the device matrix) and tests/replay/test_replay.py;
#   2. benchmarks/cuda_step.py for SAC 256x2 (paper-original), TD3 256x2, paper-S and paper-L
#      at Ant-v5's sizes: the step's parameters against the CPU's to 1e-4 (TF32 off), then
#      updates/s, compile seconds and peak memory eager, with CUDA graphs (reduce-overhead)
#      and without (max-autotune-no-cudagraphs), at float32 and TF32 matmul precision;
#   3. `widerl bench` against Stable-Baselines3 on the same GPU, with the matmul peak;
#   4. a paper-S run trained on CUDA, then evaluated, loaded (`load_policy`) and resumed on
#      the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
    mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 websockets==17.4 glfw==2.11.0
    pyopengl==3.1.10 gymnasium==1.4.0 farama-notifications==0.0.6 stable-baselines3==2.9.2
)

prepare() {
    local py="${PYTHON:-python3}"
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
    du -sh .whl
}

run() {
    local device="${DEVICE:-cuda}"
    local out="${OUT:-gpu-check-results}"
    local py="${PYTHON:-python3}"
    mkdir -p "$out"
    if [ -d .whl ] && [ -z "${SKIP_WHEELS:-}" ]; then
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl
        export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MUJOCO_GL=egl
    (nvidia-smi || true) >"$out/nvidia-smi.txt" 2>&1
    "$py" -c "import torch, gymnasium, mujoco, stable_baselines3 as sb3; \
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name() if torch.cuda.is_available() else '-', \
'gymnasium', gymnasium.__version__, 'mujoco', mujoco.__version__, 'sb3', sb3.__version__)" \
        | tee "$out/versions.txt"

    local quick="${QUICK:-}"
    local updates=300 wide_updates=50 steps="${RUN_STEPS:-2000}" warmup=1000 pretrain=200
    if [ -n "$quick" ]; then
        updates=5 wide_updates=2 steps=20 warmup=100 pretrain=5
    fi

    # 1. Every device-parametrized test and the CUDA replay tests.
    "$py" -m pytest -q -p no:cacheprovider tests/run/test_devices.py tests/replay/test_replay.py -rs \
        2>&1 | tee "$out/tests.txt" || true

    # 2. The step on the device: numerics against the CPU, speed and memory per compile mode.
    for spec in "sac paper-original Hopper-v5 $updates" "td3 paper-original Hopper-v5 $updates" \
        "sac paper-S Ant-v5 $updates" "sac paper-L Ant-v5 $wide_updates"; do
        set -- $spec
        "$py" benchmarks/cuda_step.py --device "$device" --algo "$1" --preset "$2" --env "$3" \
            --updates "$4" --out "$out" 2>&1 | tee -a "$out/cuda-step.txt" || true
    done

    # 3. Update throughput next to SB3 on the same device, and the matmul peak.
    for spec in "sac 256 Hopper-v5 $updates" "td3 256 Hopper-v5 $updates" \
        "sac 2048 Ant-v5 $wide_updates"; do
        set -- $spec
        "$py" -m widerl.cli bench --device "$device" --algo "$1" --units "$2" --layers 2 \
            --env "$3" --updates "$4" --rounds 5 --json >"$out/bench-$1-$2.json" || true
        "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); \
print(sys.argv[1], {k: d[k] for k in ('ours_updates_per_s','peer_updates_per_s','ratio',\
'peak_flops_fraction')})" "$out/bench-$1-$2.json" || true
    done

    # 4. A short real run on the device (paper-S SAC with OFENet on Hopper-v5), then on the CPU:
    # evaluated, loaded and resumed.
    local run=/tmp/gpu-check-run
    rm -rf "$run"
    "$py" -m widerl.cli train --device "$device" --env Hopper-v5 --preset paper-S \
        --steps "$steps" --warmup "$warmup" --ofenet-pretrain "$pretrain" \
        --eval-every "$((steps / 2))" --eval-episodes 2 --checkpoint-replay --no-progress \
        --out "$run" 2>&1 | tee "$out/train.txt"
    cp "$run/metrics.csv" "$out/train-metrics.csv"
    "$py" -m widerl.cli eval "$run" --device cpu --episodes 2 2>&1 | tee "$out/cross.txt"
    "$py" -c "import sys, numpy as np, widerl; p = widerl.load_policy(sys.argv[1]); \
print('load_policy on cpu:', p.act(np.zeros(p.obs_dim)))" "$run" 2>&1 | tee -a "$out/cross.txt"
    "$py" -m widerl.cli train --resume "$run" --device cpu --steps "$((steps + steps / 10))" \
        --no-progress 2>&1 | tee -a "$out/cross.txt"
    cp "$run/metrics.csv" "$out/cross-metrics.csv"
}

case "${1:-}" in
prepare) prepare ;;
run) run ;;
*)
    echo "usage: $0 prepare|run" >&2
    exit 2
    ;;
esac
