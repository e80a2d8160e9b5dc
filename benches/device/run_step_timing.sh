#!/usr/bin/env bash
# Runs on the GPU machine from the carried `device-run/` folder (see prepare.sh): first checks the
# fast path against candle's stock ops there (every fast op on random inputs, then a whole step's
# gradients; examples/fast_ops_check.rs), then times the ProtoNet training step (5-way 5-shot
# 15-query, 84×84) for Conv-4 and ResNet-12 on candle's stock ops and on the fast path, then eager
# PyTorch's reference step on the same card, and prints a table last.
#
#   bash device-run/run_step_timing.sh [cuda|cpu] [steps] [warm-up]     (default: cuda 20 5)
#   BACKBONES="conv4" bash device-run/run_step_timing.sh cpu 2 1         (a subset of the backbones)
#
# Each run has its own timeout, so a failing or slow configuration cannot eat the others' time; a
# configuration that cannot run (e.g. a fast op without a CUDA kernel yet) shows as FAILED with its
# error, and its stderr stays in device-run/<backbone>-<ops>.err.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
device="${1:-cuda}"
steps="${2:-20}"
warm="${3:-5}"
if [ "$device" != cpu ]; then
  # shellcheck disable=SC1091
  source "$here/gpu-env.sh"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
for example in step_timing fast_ops_check; do
  if [ -f "$here/$example.gz" ] && [ ! -x "$here/$example" ]; then
    gzip -dc "$here/$example.gz" >"$here/$example" 2>/dev/null \
      || python3 -c 'import gzip,shutil,sys; shutil.copyfileobj(gzip.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$here/$example.gz" "$here/$example"
    chmod +x "$here/$example"
  fi
done
timeout 300 "$here/fast_ops_check" "$device" ${BACKBONES:-} >"$here/check.out" 2>"$here/check.err"
rc=$?
check="$(grep -E '^(RESULT|FAILED) ' "$here/check.out")"
[ -n "$check" ] || check="FAILED fast_ops_check device=$device error=no result: exit status $rc (see check.err)"
lines=()
for backbone in ${BACKBONES:-conv4 resnet12}; do
  for ops in stock fast; do
    timeout 240 "$here/step_timing" "$device" "$backbone" "$ops" "$steps" "$warm" \
      >"$here/$backbone-$ops.out" 2>"$here/$backbone-$ops.err"
    rc=$?
    line="$(grep -E '^(RESULT|FAILED) ' "$here/$backbone-$ops.out")"
    case "$rc" in 124) why="timed out after 240 s";; 137) why="killed (out of memory?)";; *) why="exit status $rc";; esac
    [ -n "$line" ] || line="FAILED step_timing device=$device backbone=$backbone ops=$ops error=no result: $why (see $backbone-$ops.err)"
    lines+=("$line")
  done
done
torch="$(timeout 300 python3 "$here/torch_reference.py" "$device" 2>"$here/torch.err" | grep '^RESULT ')"
[ -n "$torch" ] || torch="FAILED torch reference (see torch.err)"
echo
echo "== fast ops against stock ($device) =="
grep -E '^(op|step) ' "$here/check.out" | awk '$NF != "ok" || /^step/'
echo "(every op line not shown is within 1e-4)"
echo
echo "== raw =="
printf '%s\n' "$check" "${lines[@]}" "$torch"
echo
echo "== ProtoNet step, 5w5s15q at 84x84, median ms ($device) =="
printf '%-10s %-8s %10s %10s %10s %10s\n' backbone path forward backward optimiser step
for line in "${lines[@]}"; do
  field() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
  if [[ "$line" == RESULT* ]]; then
    printf '%-10s %-8s %10s %10s %10s %10s\n' "$(field backbone)" "$(field ops)" "$(field forward_ms)" \
      "$(field backward_ms)" "$(field optimiser_ms)" "$(field step_ms)"
  else
    printf '%-10s %-8s %s\n' "$(field backbone)" "$(field ops)" "FAILED"
  fi
done
echo "$torch" | tr ' ' '\n' | awk -F= '/^model=/{m=$2} /^ms_per_step=/{printf "%-10s %-8s %10s %10s %10s %10s\n", m, "torch", "-", "-", "-", $2}'
# the raw outputs come back with the device tool's $OUT, where there is one
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then cp "$here"/*.out "$here"/*.err "$OUT"/ 2>/dev/null || true; fi
