#!/usr/bin/env bash
# Runs on the GPU machine from the carried `device-run/` folder (see prepare.sh): first checks the
# fast path against candle's stock ops there (every fast op on random inputs, then a whole step's
# gradients; examples/fast_ops_check.rs), then times the training steps of examples/step_timing.rs
# (ProtoNet 5w5s15q on Conv-4 and ResNet-12, and a ResNet-12 test episode; LWFM-SPM on ResNet-18,
# 1- and 5-shot with the auxiliary batch of 128, and one of its test episodes each, with SPM's
# matching timed apart; all at 84×84) on each path (below), 2,000 ResNet-12
# ProtoNet test episodes evaluated as the suite evaluates them (`resnet12-episodes`: the backbone once
# per distinct image, on a synthetic store shaped like miniImageNet's test split), with the peak
# device memory nvidia-smi saw during each run (sampled every 100 ms, CUDA context included), then the ProtoNet
# backbones' layers one by one (`layers-conv4`, `layers-resnet12`: forward and backward per distinct
# layer, summed by kind per step), then eager PyTorch's reference ProtoNet step on the same card,
# and prints the tables last.
#
#   bash device-run/run_step_timing.sh [cuda|cpu] [steps] [warm-up]     (default: cuda 10 3)
#   BACKBONES="conv4" bash device-run/run_step_timing.sh cpu 2 1         (a subset of the steps)
#   PATHS="fast fast-tf32"                                               (default: stock fast fast-tf32)
#   SKIP_CHECK=1 / SKIP_TORCH=1                                          (leave those parts out)
#   EPISODES=2000                                                        (episodes per *-episodes run)
#
# Paths: candle's stock ops, the fast path in f32, and the fast path with TF32 convolutions (eager
# PyTorch convolves in TF32 by default on a GPU: torch.backends.cudnn.allow_tf32).
# Time limits: 60 s for the check, 40 s per stock run and 25 s per fast run (120 s for a *-episodes
# run: store, model, op check, warm-up, the 2,000 episodes, then 50 the old way), 90 s for PyTorch and
# 20 s for its settings, each five times that on `cpu` (a rehearsal on a build machine: the op check alone
# took 56 s on a 2-core one). The device tool stops a command at 600 s, so on the GPU run it in three calls,
# each within the machine's 30 s idle window of the last: at most 440 s, 540 s and 360 s (the third
# only if the session's device time allows: `status`), though a run should take
# seconds there (model build, the op check, 23 steps of milliseconds); the session's 900 s of device
# time also pays the machine's start.
#   BACKBONES="conv4 resnet12 resnet12-eval" bash device-run/run_step_timing.sh cuda
#   BACKBONES="lwfm-r18-1s lwfm-r18-5s lwfm-r18-1s-eval lwfm-r18-5s-eval layers-conv4 layers-resnet12" SKIP_CHECK=1 SKIP_TORCH=1 bash device-run/run_step_timing.sh cuda
#   BACKBONES="resnet12-episodes" PATHS="fast fast-tf32 stock" SKIP_CHECK=1 SKIP_TORCH=1 bash device-run/run_step_timing.sh cuda
# Every result line is printed (and its files copied to $OUT) as soon as its run ends, so a stopped
# command keeps what finished.
#
# Each run has its own timeout, so a failing or slow configuration cannot eat the others' time; a
# configuration that cannot run (e.g. a fast op without a CUDA kernel yet) shows as FAILED with its
# error, and its stderr stays in device-run/<backbone>-<ops>.err.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
device="${1:-cuda}"
steps="${2:-10}"
warm="${3:-3}"
# the time limits below are the GPU's; a CPU rehearsal gets five times each
scale=1
[ "$device" = cpu ] && scale=5
all_steps="conv4 resnet12 resnet12-eval lwfm-r18-1s lwfm-r18-5s lwfm-r18-1s-eval lwfm-r18-5s-eval layers-conv4 layers-resnet12 resnet12-episodes"
if [ "$device" != cpu ]; then
  # shellcheck disable=SC1091
  source "$here/gpu-env.sh"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
for example in step_timing fast_ops_check; do
  if [ -f "$here/$example.gz" ] && [ ! -s "$here/$example" ]; then
    gzip -dc "$here/$example.gz" >"$here/$example" 2>/dev/null \
      || python3 -c 'import gzip,shutil,sys; shutil.copyfileobj(gzip.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$here/$example.gz" "$here/$example"
    chmod +x "$here/$example"
  fi
done
# the raw outputs go back with the device tool's $OUT, where there is one, as soon as they exist
keep() { if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then cp "$@" "$OUT"/ 2>/dev/null || true; fi; }
check="check skipped"
if [ -z "${SKIP_CHECK:-}" ]; then
  # the op check's whole-step comparison knows the ProtoNet backbones (`none`: ops only)
  check_backbones="$(for b in ${BACKBONES:-conv4 resnet12}; do case "$b" in conv4|resnet12) echo "$b";; esac; done)"
  # shellcheck disable=SC2086
  timeout $((60 * scale)) "$here/fast_ops_check" "$device" ${check_backbones:-none} >"$here/check.out" 2>"$here/check.err"
  rc=$?
  check="$(grep -E '^(RESULT|FAILED) ' "$here/check.out")"
  [ -n "$check" ] || check="FAILED fast_ops_check device=$device error=no result: exit status $rc (see check.err)"
  echo "$check"
  keep "$here/check.out" "$here/check.err"
fi
lines=()
declare -A peaks
peak_of() { sort -n "$1" 2>/dev/null | tail -1; }
for backbone in ${BACKBONES:-$all_steps}; do
  for ops in ${PATHS:-stock fast fast-tf32}; do
    limit=25
    [ "$ops" = stock ] && limit=40
    run_steps="$steps"
    run_warm="$warm"
    case "$backbone" in *-episodes) limit=120; run_steps="${EPISODES:-2000}"; run_warm=3;; esac
    limit=$((limit * scale))
    sampler=""
    if [ "$device" != cpu ] && command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$here/$backbone-$ops.mem" 2>/dev/null &
      sampler=$!
    fi
    timeout "$limit" "$here/step_timing" "$device" "$backbone" "$ops" "$run_steps" "$run_warm" \
      >"$here/$backbone-$ops.out" 2>"$here/$backbone-$ops.err"
    rc=$?
    if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null; fi
    peaks["$backbone-$ops"]="$(peak_of "$here/$backbone-$ops.mem")"
    line="$(grep -E '^(RESULT|FAILED) ' "$here/$backbone-$ops.out")"
    case "$rc" in 124) why="timed out after $limit s";; 137) why="killed (out of memory?)";; *) why="exit status $rc";; esac
    [ -n "$line" ] || line="FAILED step_timing device=$device backbone=$backbone ops=$ops error=no result: $why (see $backbone-$ops.err)"
    lines+=("$line")
    echo "$line peak_mib=${peaks[$backbone-$ops]:--}"
    keep "$here/$backbone-$ops".*
  done
done
torch=""
if [ -z "${SKIP_TORCH:-}" ]; then
  torch="$(timeout $((90 * scale)) python3 "$here/torch_reference.py" "$device" 2>"$here/torch.err" | grep '^RESULT ')"
  [ -n "$torch" ] || torch="FAILED torch reference (see torch.err)"
  echo "$torch"
  # the reference runs on PyTorch's defaults: say which arithmetic they chose
  timeout $((20 * scale)) python3 -c 'import torch; b = torch.backends; print("torch defaults: cudnn.allow_tf32=%s matmul.allow_tf32=%s cudnn.benchmark=%s" % (b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32, b.cudnn.benchmark))' 2>>"$here/torch.err"
  keep "$here/torch.err"
fi
echo
if [ -z "${SKIP_CHECK:-}" ]; then
  echo "== fast ops against stock ($device) =="
  grep -E '^(op|step) ' "$here/check.out" | awk '$NF != "ok" || /^step/'
  echo "(every op line not shown is within its bound)"
fi
echo
echo "== raw =="
printf '%s\n' "$check" "${lines[@]}" ${torch:+"$torch"}
echo
echo "== training steps and test episodes at 84x84, median ms per phase (matching: LWFM-SPM's, part of head), whole step mean ms, peak MiB ($device) =="
printf '%-16s %-9s %9s %9s %9s %9s %9s %9s %9s\n' step path backbone head matching backward optimiser step peak_MiB
field() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
for line in "${lines[@]}"; do
  key="$(field backbone)-$(field ops)"
  case "$key" in layers-*|*-episodes-*) continue;; esac
  if [[ "$line" == RESULT* ]]; then
    matching="$(field matching_ms)"
    printf '%-16s %-9s %9s %9s %9s %9s %9s %9s %9s\n' "$(field backbone)" "$(field ops)" "$(field backbone_ms)" \
      "$(field head_ms)" "${matching:--}" "$(field backward_ms)" "$(field optimiser_ms)" "$(field step_ms)" "${peaks[$key]:--}"
  else
    printf '%-16s %-9s %s\n' "$(field backbone)" "$(field ops)" "FAILED"
  fi
done
echo "$torch" | tr ' ' '\n' | awk -F= '/^model=/{m=$2} /^ms_per_step=/{printf "%-16s %-9s %9s %9s %9s %9s %9s %9s %9s\n", m, "torch", "-", "-", "-", "-", "-", $2, "-"}'
for line in "${lines[@]}"; do
  case "$line" in
    RESULT*backbone=resnet12-eval*)
      echo "$line" | tr ' ' '\n' | awk -F= '/^ops=/{o=$2} /^step_ms=/{printf "one ResNet-12 test episode alone (%s path): %.2f ms; 2,000 episode by episode: %.1f s\n", o, $2, $2 * 2}';;
    RESULT*backbone=resnet12-episodes*)
      echo "$line" | tr ' ' '\n' | awk -F= '/^ops=/{o=$2} /^episodes=/{n=$2} /^distinct_images=/{d=$2} /^evaluate_s=/{s=$2} /^episode_by_episode_ms=/{e=$2} END {printf "%s ResNet-12 test episodes as the suite evaluates them (%s path): %.1f s, %s distinct images (target: 2,000 under 60 s); episode by episode %.1f ms each\n", n, o, s, d, e}';;
    FAILED*backbone=resnet12-episodes*) echo "$line";;
  esac
done
layer_lines=()
for line in "${lines[@]}"; do case "$line" in *backbone=layers-*) layer_lines+=("$line");; esac; done
if [ "${#layer_lines[@]}" -gt 0 ]; then
  echo
  echo "== backbone layers one by one, ms per step: count x (forward + backward), by kind ($device) =="
  printf '%-16s %-9s %9s %9s %9s %9s %9s\n' layers path conv batch_norm max_pool activation total
  for line in "${layer_lines[@]}"; do
    if [[ "$line" == RESULT* ]]; then
      printf '%-16s %-9s %9s %9s %9s %9s %9s\n' "$(field backbone)" "$(field ops)" "$(field conv_ms)" \
        "$(field batch_norm_ms)" "$(field max_pool_ms)" "$(field activation_ms)" "$(field layers_ms)"
    else
      printf '%-16s %-9s %s\n' "$(field backbone)" "$(field ops)" "FAILED"
    fi
  done
  echo "slowest layers on each fast path (ms per step; this run's outputs only):"
  for backbone in ${BACKBONES:-$all_steps}; do
    case "$backbone" in layers-*)
      for ops in ${PATHS:-stock fast fast-tf32}; do
        [ "$ops" = stock ] && continue
        grep '^layer ' "$here/$backbone-$ops.out" 2>/dev/null \
          | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^step_ms=/) { split($i, v, "="); print v[2] "\t" $0 } }' \
          | sort -g -r | head -5 | cut -f2- | sed "s/^/  $backbone $ops: /"
      done;;
    esac
  done
fi
echo "authors' LWFM-SPM code on an H200 (quoted from issue #6, a separate run): 46.9 / 53.9 ms per 1- / 5-shot training step (matching 8.0 / 24.1 ms), 18.6 / 29.5 ms per 1- / 5-shot test episode (matching 8.2 / 21.8 ms)"
