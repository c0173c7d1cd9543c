#!/usr/bin/env bash
# The GPU measurement kit: everything `python -m tooling.bench` needs on a GPU machine that has a CUDA PyTorch
# image (torch, torchvision, numpy, pillow, scikit-image, pyarrow, grpcio, pandas, typer, ...) but no network.
#
#   deploy/gpu/kit.sh fetch   # here, where PyPI and Debian answer: wheels and redis-server into .gpu-kit/ (57 MiB)
#   deploy/gpu/kit.sh run     # there, in the repository root, with .gpu-kit beside it: install it, then measure
#   deploy/gpu/kit.sh pins    # the packages' pinned versions (fails if constraints.txt lacks one)
#
# With the device tool: run `bash deploy/gpu/kit.sh run` with carry [".gpu-kit"] and timeout_s 600.
#
# `run` writes what it measured under $OUT (the device tool's results folder; default .gpu-kit/out):
#   device.txt    nvidia-smi and what PyTorch sees
#   agreement.txt python -m tooling.eval.decode_agreement --device cuda: GPU-decoded fingerprints against the CPU's
#   bench.txt     python -m tooling.bench --device cuda: model only (fp16, channels-last; eager and compiled with
#                 CUDA graphs), end to end, the model-free ceiling for 1, 2 and 4 worker processes, 12 MP JPEGs
# Not yet run on a GPU (none was lent to this project); planned to fit in the device tool's 10 minutes a call.
# Tried without a GPU (DEVICE=cpu, in a Python 3.12 venv with only torch 2.11, torchvision 0.26, a few of the
# image's packages and this kit): the full run took 6 minutes on 2 cores; KIT_QUICK=1 runs a small one in 1.
set -euo pipefail

KIT=.gpu-kit
PYTHON_VERSION=${KIT_PYTHON_VERSION:-3.12}  # the GPU image's python3
# What the service, moto's S3 server and Milvus Lite import beyond that image, at constraints.txt's versions.
PACKAGES=(
  amqp annotated-types argon2-cffi argon2-cffi-bindings billiard blinker boto3 botocore cachetools celery cffi
  click-didyoumean click-plugins click-repl cryptography faiss-cpu flask flask-cors imagehash itsdangerous
  jmespath kombu milvus-lite minio moto orjson prompt-toolkit py-partiql-parser pycparser pycryptodome pydantic
  pydantic-core pydantic-settings pymilvus python-dotenv python-multipart redis responses s3transfer starlette
  typing-inspection tzlocal uvicorn vine wcwidth xmltodict
)
DEBS=(redis-server redis-tools liblzf1 libjemalloc2)
PLATFORMS=(manylinux1_x86_64 manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_24_x86_64
  manylinux_2_27_x86_64 manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64)

pinned() {  # "name==version" from constraints.txt, whatever the spelling (-, _, . and case)
  local want line name
  want=$(echo "$1" | tr 'A-Z_.' 'a-z--')
  while IFS= read -r line; do
    name=$(echo "${line%%==*}" | tr 'A-Z_.' 'a-z--')
    if [[ $name == "$want" ]]; then echo "$line"; return; fi
  done < <(grep '==' constraints.txt)
  echo "deploy/gpu/kit.sh: $1 is not pinned in constraints.txt" >&2
  return 1
}

fetch() {
  rm -rf "$KIT" && mkdir -p "$KIT"
  local specs=() platform_args=() p
  for p in "${PACKAGES[@]}"; do specs+=("$(pinned "$p")"); done
  for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
  python3 -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
    --python-version "$PYTHON_VERSION" "${platform_args[@]}" -d "$KIT" "${specs[@]}"
  (cd "$KIT" && apt-get download "${DEBS[@]}")
  du -sh "$KIT"
  echo "carry .gpu-kit and run: bash deploy/gpu/kit.sh run (64 MiB travel with the repository at most)"
}

run() {
  local out=${OUT:-$KIT/out} device=${DEVICE:-cuda}
  mkdir -p "$out"
  python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$KIT"/*.whl
  for deb in "$KIT"/*.deb; do dpkg -x "$deb" /tmp/redis; done
  # celery and moto_server are found on PATH (tooling.localstack.script); their scripts run this python3
  export PYTHONPATH="/tmp/site:$PWD" PATH="/tmp/redis/usr/bin:/tmp/site/bin:$PATH" PYTHONUNBUFFERED=1
  { nvidia-smi || true; python3 -c 'import torch; print(torch.__version__, torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA")'; } > "$out/device.txt" 2>&1
  cat "$out/device.txt"
  local bench=(--device "$device" --batch-size 64 --compile reduce-overhead --processes 1,2,4)
  local sources=(--sources 12)
  if [[ -n ${KIT_QUICK:-} ]]; then
    bench=(--device "$device" --batch-size 8 --images 16 --processes 1 --camera 2)
    sources=(--sources 2)
  fi
  python3 -m tooling.eval.decode_agreement --device "$device" "${sources[@]}" 2>&1 | tee "$out/agreement.txt"
  python3 -m tooling.bench "${bench[@]}" 2>&1 | tee "$out/bench.txt"
}

pins() {
  local p
  for p in "${PACKAGES[@]}"; do pinned "$p"; done
}

case ${1:-} in
  fetch) fetch ;;
  run) run ;;
  pins) pins ;;
  *) echo "usage: $0 fetch|run|pins" >&2; exit 2 ;;
esac
