#!/usr/bin/env bash
# Prepares the folder `device-run/` (git-ignored) to carry to the GPU machine for issue #6's check and
# timing run: the `fast_ops_check` and `step_timing` examples built with `--features cuda` (stripped
# and gzipped: 54 MB each, mostly candle's PTX, 13 MB gzipped; the carry limit is 64 MiB in all),
# ../shared/tools/gpu-env.sh, ../shared/bench/torch_reference.py and run_step_timing.sh. Run from
# the repository root:
#
#   bash benches/device/prepare.sh            # CUDA build (environment from `cargo xtask cuda-env`)
#   bash benches/device/prepare.sh --cpu      # CPU build, to try the run script here first
#
# Then, with the device tool: run(command="bash device-run/run_step_timing.sh cuda",
# carry=["device-run"]) — and on CPU here: bash device-run/run_step_timing.sh cpu 2 1.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
shared="$root/../shared"
out="$root/device-run"
mode="${1:-cuda}"
case "$mode" in
  cuda|--cpu) ;;
  *) echo "usage: bash benches/device/prepare.sh [--cpu]   (no argument: the CUDA build)" >&2; exit 2;;
esac
cd "$root"
if [ "$mode" = "--cpu" ]; then
  cargo build --release --example step_timing --example fast_ops_check --target-dir target
  built="target/release/examples"
else
  cargo fetch --locked
  eval "$(cargo xtask cuda-env)"
  cargo build --release --features cuda --example step_timing --example fast_ops_check \
    --target-dir target/cuda
  built="target/cuda/release/examples"
  # the NVRTC kernels compile here (libnvrtc, no device): a kernel that does not is found now
  LD_LIBRARY_PATH="$FEWSHOT_CUDA_LOCAL_LD_PATH" "$built/fast_ops_check" kernels
fi
rm -rf "$out"
mkdir -p "$out"
for example in step_timing fast_ops_check; do
  cp "$built/$example" "$out/$example"
  strip "$out/$example"
  gzip -9 "$out/$example"
done
cp "$shared/tools/gpu-env.sh" "$shared/bench/torch_reference.py" "$out/"
cp "$root/benches/device/run_step_timing.sh" "$out/"
du -sh "$out"
