#!/usr/bin/env bash
# The CUDA checks of issue 2, as one short script for a lent GPU machine.
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
# `--actors N` imports it. DEVICE=cpu runs the same steps on a CPU, to try the script itself.
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

    # 1. Every device-parametrized test (tests/test_devices.py) and the CUDA replay tests.
    "$py" -m pytest -q -p no:cacheprovider tests/test_devices.py tests/test_replay.py -rs \
        2>&1 | tee "$out/tests.txt"

    # 2. Update throughput next to SB3 on the same device, and the matmul peak.
    local wide_updates=50
    [ "$device" = cpu ] && wide_updates=3
    for spec in "sac 256 Hopper-v5 200" "td3 256 Hopper-v5 200" "sac 2048 Ant-v5 $wide_updates"; do
        set -- $spec
        "$py" -m widerl.cli bench --device "$device" --algo "$1" --units "$2" --layers 2 \
            --env "$3" --updates "$4" --rounds 5 --json >"$out/bench-$1-$2.json"
        "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); \
print(sys.argv[1], {k: d[k] for k in ('ours_updates_per_s','peer_updates_per_s','ratio',\
'peak_flops_fraction')})" "$out/bench-$1-$2.json"
    done

    # 3. A short real run on the device: paper-S SAC with OFENet on Hopper-v5.
    rm -rf /tmp/gpu-check-run
    "$py" -m widerl.cli train --device "$device" --env Hopper-v5 --preset paper-S \
        --steps "${RUN_STEPS:-2000}" --warmup 1000 --ofenet-pretrain 200 --eval-every 1000 \
        --eval-episodes 2 --no-progress --out /tmp/gpu-check-run | tee "$out/train.txt"
    cp /tmp/gpu-check-run/metrics.csv "$out/train-metrics.csv"
}

case "${1:-}" in
prepare) prepare ;;
run) run ;;
*)
    echo "usage: $0 prepare|run" >&2
    exit 2
    ;;
esac
