#!/usr/bin/env bash
# Builds one benchmark environment per peer library under bench/.envs/<peer> (idempotent).
# Each gets the same CPU torch as vista first, then the peer with torch pinned, so the peers
# run on the same kernels as vista. Usage: bench/peers/setup.sh [peer ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
TORCH=${VISTA_TORCH:-torch==2.13.0}
declare -A PKG=(
  [saelens]="sae-lens"
  [sparsify]="eai-sparsify"
  [overcomplete]="overcomplete matplotlib<3.9"
  [dictlearn]="dictionary-learning"
)
peers=("$@")
[[ ${#peers[@]} -eq 0 ]] && peers=(saelens sparsify overcomplete dictlearn)
build() {
  local peer=$1 pkg=${PKG[$1]} env=bench/.envs/$1
  echo "bench/peers/setup.sh: building $env ($pkg)" >&2
  [[ -x $env/bin/python ]] || "$PY" -m venv "$env"
  "$env/bin/python" -m pip -q --disable-pip-version-check install "$TORCH" 2>&1 | grep -v "is ignored" || true
  # shellcheck disable=SC2086  # $pkg may hold extra pins
  "$env/bin/python" -m pip -q --disable-pip-version-check install -c constraints.txt $pkg 2>&1 | grep -v "is ignored" || true
  # torchvision arrives as a dependency but cannot be imported on these machines (ASSETS.md);
  # with it installed, transformers and friends try to load it and fail.
  "$env/bin/python" -m pip -q --disable-pip-version-check uninstall -y torchvision 2>&1 | grep -v "is ignored\|not installed" || true
  "$env/bin/python" -c "import torch" || { echo "bench/peers/setup.sh: $env is broken" >&2; return 1; }
  touch "$env/.ready"
}
# The environments build in parallel (pip spends most of its time waiting on downloads and disk).
pids=()
for peer in "${peers[@]}"; do
  : "${PKG[$peer]:?unknown peer $peer; choose from ${!PKG[*]}}"
  [[ -f bench/.envs/$peer/.ready ]] && continue
  build "$peer" & pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
