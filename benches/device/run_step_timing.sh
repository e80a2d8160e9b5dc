#!/usr/bin/env bash
# Runs on the GPU machine from the carried `device-run/` folder (see prepare.sh): checks the fast
# path against candle's stock ops there (every fast op on random inputs, then a whole step's
# gradients; examples/fast_ops_check.rs), times training steps and test episodes
# (examples/step_timing.rs: ProtoNet 5w5s15q on Conv-4 and ResNet-12; LWFM-SPM on ResNet-18, 1- and
# 5-shot with the auxiliary batch of 128, with SPM's matching timed apart; 2,000 ResNet-12 ProtoNet
# test episodes evaluated as the suite evaluates them, on a synthetic store shaped like
# miniImageNet's test split; the backbones' layers one by one), each with the peak device memory
# nvidia-smi saw (sampled every 100 ms, CUDA context included), then eager PyTorch's reference
# ProtoNet step on the same card, and prints the tables last.
#
#   bash device-run/run_step_timing.sh [cuda|cpu] [steps] [warm-up]     (default: cuda 10 3)
#
# One device call must carry what matters most (15 minutes of device time per task, the machine's
# start and idle included), so the runs come in two plans, most important first:
#   PLAN=first (default): warm-up (candle's PTX JIT-compiled once, into a cache kept for the later
#     runs), the op check on Conv-4, Conv-4 and ResNet-12 ProtoNet steps on the fast and the stock
#     path, the LWFM-SPM 1- and 5-shot steps on the fast path, 2,000 ResNet-12 test episodes on the
#     fast path, eager PyTorch.
#   PLAN=second (optional, if the device time allows: `status`): the op check's ResNet-12 step, the
#     TF32 and the non-deterministic (`fast-fastest`) paths, test-episode times, LWFM-SPM on the stock
#     path, the layers one by one, the 2,000 episodes on the stock path.
# The whole call keeps within BUDGET seconds (default 400; five times that on `cpu`): each run's
# limit is cut to what is left, and a run with under MIN_LEFT (15) seconds left is SKIPPED, so the
# device tool's limit (timeout_s) should be BUDGET + 60.
#   BACKBONES="conv4" PATHS="fast"          (instead of a plan: these steps × these paths, check first)
#   SKIP_CHECK=1 / SKIP_TORCH=1 / SKIP_WARMUP=1                      (leave those parts out)
#   EPISODES=2000                                                    (episodes per *-episodes run)
# Per-run limits: 180 s warm-up, 60 s op check, 40 s a stock run, 25 s a fast run, 120 s an
# *-episodes run, 90 s PyTorch; each five times that on `cpu` (a rehearsal on a build machine).
#
# What comes back: every result line is printed as soon as its run ends (a stopped command keeps
# what finished), a failing run's last 20 lines of stderr are printed with it, and $OUT holds two
# files, rewritten after every run: `runs.tar.gz` (every run's .out/.err/.mem, the op check's
# files, PyTorch's stderr) and `summary.txt` (the lines printed so far) — the device tool returns
# at most 8 files, so nothing is copied one by one.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
device="${1:-cuda}"
steps="${2:-10}"
warm="${3:-3}"
started=$SECONDS
# the time limits below are the GPU's; a CPU rehearsal gets five times each
scale=1
[ "$device" = cpu ] && scale=5
budget=$(( ${BUDGET:-400} * scale ))
min_left="${MIN_LEFT:-15}"
summary="$here/summary.txt"
: >"$summary"
say() { echo "$*"; echo "$*" >>"$summary"; }
# everything a run wrote goes back in one archive, rewritten after each run
pack() {
  if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
    (cd "$here" && tar czf "$OUT/runs.tar.gz.part" --ignore-failed-read \
      $(ls -- *.out *.err *.mem 2>/dev/null) >/dev/null 2>&1; mv "$OUT/runs.tar.gz.part" "$OUT/runs.tar.gz")
    cp "$summary" "$OUT/summary.txt" 2>/dev/null || true
  fi
}
# seconds a run may take: its limit, cut to what is left of the budget (0: skip it)
allowed() {
  local limit=$(( $1 * scale )) left=$(( budget - (SECONDS - started) ))
  if [ "$left" -lt "$min_left" ]; then echo 0; elif [ "$limit" -gt "$left" ]; then echo "$left"; else echo "$limit"; fi
}
tail_err() { echo "  --- last 20 lines of $(basename "$1") ---"; tail -n 20 "$1" 2>/dev/null | sed 's/^/  /'; }
if [ "$device" != cpu ]; then
  # shellcheck disable=SC1091
  source "$here/gpu-env.sh"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  # candle's ~54 MB of PTX is JIT-compiled by the driver on first use: keep it in a cache large
  # enough for all of it, so only the warm-up pays
  export CUDA_CACHE_MAXSIZE=4294967296
  export CUDA_CACHE_PATH="$here/.nv-cache"
fi
for example in step_timing fast_ops_check; do
  if [ -f "$here/$example.gz" ] && [ ! -s "$here/$example" ]; then
    gzip -dc "$here/$example.gz" >"$here/$example" 2>/dev/null \
      || python3 -c 'import gzip,shutil,sys; shutil.copyfileobj(gzip.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$here/$example.gz" "$here/$example"
    chmod +x "$here/$example"
  fi
done
# the plan: "step:path" runs in order (check:<backbones> is the op check, torch the reference)
case "${PLAN:-first}" in
  first) plan="warmup check:conv4 conv4:fast conv4:stock resnet12:fast resnet12:stock lwfm-r18-1s:fast lwfm-r18-5s:fast resnet12-episodes:fast torch";;
  second) plan="check:resnet12 conv4:fast-tf32 resnet12:fast-tf32 conv4:fast-fastest resnet12:fast-fastest resnet12-eval:fast lwfm-r18-1s-eval:fast lwfm-r18-5s-eval:fast lwfm-r18-1s:stock lwfm-r18-5s:stock layers-conv4:fast layers-resnet12:fast layers-conv4:stock layers-resnet12:stock resnet12-episodes:stock";;
  *) echo "PLAN must be first or second" >&2; exit 2;;
esac
if [ -n "${BACKBONES:-}${PATHS:-}" ]; then
  all_steps="conv4 resnet12 resnet12-eval lwfm-r18-1s lwfm-r18-5s lwfm-r18-1s-eval lwfm-r18-5s-eval layers-conv4 layers-resnet12 resnet12-episodes"
  check_backbones="$(for b in ${BACKBONES:-conv4 resnet12}; do case "$b" in conv4|resnet12) printf '%s,' "$b";; esac; done)"
  check_backbones="${check_backbones%,}"
  plan="check:${check_backbones:-none}"
  for backbone in ${BACKBONES:-$all_steps}; do
    for ops in ${PATHS:-stock fast fast-tf32}; do plan="$plan $backbone:$ops"; done
  done
  plan="$plan torch"
fi
[ -n "${SKIP_WARMUP:-}" ] && plan="${plan//warmup/}"
[ -n "${SKIP_CHECK:-}" ] && plan="$(echo "$plan" | tr ' ' '\n' | grep -v '^check:' | tr '\n' ' ')"
[ -n "${SKIP_TORCH:-}" ] && plan="$(echo "$plan" | tr ' ' '\n' | grep -v '^torch$' | tr '\n' ' ')"
say "plan (${PLAN:-first}, budget ${budget} s on $device): $plan"
check="check skipped"
lines=()
torch=""
declare -A peaks
peak_of() { sort -n "$1" 2>/dev/null | tail -1; }
for entry in $plan; do
  case "$entry" in
    warmup)
      # one small fast and one stock step, untimed: the PTX and cuDNN's first calls are paid here
      t=$(allowed 180); [ "$t" -gt 0 ] || { say "SKIPPED warm-up (budget)"; continue; }
      w0=$SECONDS
      timeout "$t" "$here/step_timing" "$device" conv4 fast 1 1 >"$here/warmup-fast.out" 2>"$here/warmup-fast.err"
      timeout "$t" "$here/step_timing" "$device" conv4 stock 1 1 >"$here/warmup-stock.out" 2>"$here/warmup-stock.err"
      say "warm-up: $((SECONDS - w0)) s"
      ;;
    check:*)
      t=$(allowed 60); [ "$t" -gt 0 ] || { say "SKIPPED op check (budget)"; continue; }
      # the op check's whole-step comparison knows the ProtoNet backbones (`none`: ops only)
      check_backbones="${entry#check:}"
      # shellcheck disable=SC2086
      timeout "$t" "$here/fast_ops_check" "$device" ${check_backbones//,/ } >"$here/check.out" 2>"$here/check.err"
      rc=$?
      check="$(grep -E '^(RESULT|FAILED) ' "$here/check.out")"
      [ -n "$check" ] || check="FAILED fast_ops_check device=$device error=no result: exit status $rc (see check.err)"
      say "$check"
      case "$check" in FAILED*) tail_err "$here/check.err";; esac
      ;;
    torch)
      t=$(allowed 90); [ "$t" -gt 0 ] || { say "SKIPPED torch reference (budget)"; continue; }
      torch="$(timeout "$t" python3 "$here/torch_reference.py" "$device" 2>"$here/torch.err" | grep '^RESULT ')"
      [ -n "$torch" ] || { torch="FAILED torch reference (see torch.err)"; tail_err "$here/torch.err"; }
      say "$torch"
      # the reference runs on PyTorch's defaults: say which arithmetic they chose
      say "$(timeout 20 python3 -c 'import torch; b = torch.backends; print("torch defaults: cudnn.allow_tf32=%s matmul.allow_tf32=%s cudnn.benchmark=%s" % (b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32, b.cudnn.benchmark))' 2>>"$here/torch.err")"
      cp "$here/torch.err" "$here/torch-reference.err" 2>/dev/null
      ;;
    *)
      backbone="${entry%%:*}"; ops="${entry#*:}"
      limit=25
      [ "$ops" = stock ] && limit=40
      run_steps="$steps"
      run_warm="$warm"
      case "$backbone" in *-episodes) limit=120; run_steps="${EPISODES:-2000}"; run_warm=3;; esac
      t=$(allowed "$limit"); [ "$t" -gt 0 ] || { say "SKIPPED step_timing backbone=$backbone ops=$ops (budget)"; continue; }
      sampler=""
      if [ "$device" != cpu ] && command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$here/$backbone-$ops.mem" 2>/dev/null &
        sampler=$!
      fi
      timeout "$t" "$here/step_timing" "$device" "$backbone" "$ops" "$run_steps" "$run_warm" \
        >"$here/$backbone-$ops.out" 2>"$here/$backbone-$ops.err"
      rc=$?
      if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null; fi
      peaks["$backbone-$ops"]="$(peak_of "$here/$backbone-$ops.mem")"
      line="$(grep -E '^(RESULT|FAILED) ' "$here/$backbone-$ops.out")"
      case "$rc" in 124) why="timed out after $t s";; 137) why="killed (out of memory?)";; *) why="exit status $rc";; esac
      [ -n "$line" ] || line="FAILED step_timing device=$device backbone=$backbone ops=$ops error=no result: $why (see $backbone-$ops.err)"
      lines+=("$line")
      say "$line peak_mib=${peaks[$backbone-$ops]:--}"
      case "$line" in FAILED*) tail_err "$here/$backbone-$ops.err";; esac
      ;;
  esac
  pack
done
say "elapsed: $((SECONDS - started)) s of a ${budget} s budget"
# the tables, printed last and kept in summary.txt
tables() {
echo
if [ -s "$here/check.out" ]; then
  echo "== fast ops against stock ($device) =="
  grep -E '^(op|step) ' "$here/check.out" | awk '$NF != "ok" || /^step/'
  echo "(every op line not shown is within its bound; \`reported\` lines have none)"
  echo "== cuDNN's algorithm per convolution shape (the op check's) =="
  grep -E '^cudnn ' "$here/check.out" | head -40
fi
echo
echo "== raw =="
printf '%s\n' "$check" "${lines[@]+"${lines[@]}"}" ${torch:+"$torch"}
echo
echo "== training steps and test episodes at 84x84, median ms per phase (matching: LWFM-SPM's, part of head), whole step mean ms, peak MiB ($device) =="
printf '%-16s %-9s %9s %9s %9s %9s %9s %9s %9s\n' step path backbone head matching backward optimiser step peak_MiB
field() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
for line in "${lines[@]+"${lines[@]}"}"; do
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
for line in "${lines[@]+"${lines[@]}"}"; do
  case "$line" in
    RESULT*backbone=resnet12-eval*)
      echo "$line" | tr ' ' '\n' | awk -F= '/^ops=/{o=$2} /^step_ms=/{printf "one ResNet-12 test episode alone (%s path): %.2f ms; 2,000 episode by episode: %.1f s\n", o, $2, $2 * 2}';;
    RESULT*backbone=resnet12-episodes*)
      echo "$line" | tr ' ' '\n' | awk -F= '/^ops=/{o=$2} /^episodes=/{n=$2} /^distinct_images=/{d=$2} /^evaluate_s=/{s=$2} /^episode_by_episode_ms=/{e=$2} END {printf "%s ResNet-12 test episodes as the suite evaluates them (%s path): %.1f s, %s distinct images (target: 2,000 under 60 s); episode by episode %.1f ms each\n", n, o, s, d, e}';;
    FAILED*backbone=resnet12-episodes*) echo "$line";;
  esac
done
layer_lines=()
for line in "${lines[@]+"${lines[@]}"}"; do case "$line" in *backbone=layers-*) layer_lines+=("$line");; esac; done
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
  for entry in $plan; do
    backbone="${entry%%:*}"; ops="${entry#*:}"
    case "$backbone" in layers-*)
      for ops in $ops; do
        [ "$ops" = stock ] && continue
        grep '^layer ' "$here/$backbone-$ops.out" 2>/dev/null \
          | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^step_ms=/) { split($i, v, "="); print v[2] "\t" $0 } }' \
          | sort -g -r | head -5 | cut -f2- | sed "s/^/  $backbone $ops: /"
      done;;
    esac
  done
fi
echo "authors' LWFM-SPM code on an H200 (quoted from issue #6, a separate run): 46.9 / 53.9 ms per 1- / 5-shot training step (matching 8.0 / 24.1 ms), 18.6 / 29.5 ms per 1- / 5-shot test episode (matching 8.2 / 21.8 ms)"
}
tables | tee -a "$summary"
pack
