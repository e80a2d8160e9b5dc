#!/bin/bash
# When all eight cpu-conv4 cells have eval.json in $TABLE_RUNS (default /work/table/runs, where they train):
# copy the run folders into this checkout's runs/, re-evaluate each cell with $BIN (a release build at 1eea851
# or later: its eval.json names the build that evaluated; the table's binary, 134ae47, wrote only the
# checkout's commit) and stop unless the per-episode file is byte-identical to the table run's; stop unless
# the plan is all cached; write the report (reproduce); replace the committed checkpoints by the new cells'
# best ones with their configs. Then review `git diff`. Run from anywhere: bash carried-runs/cpu-conv4/finalize.sh
set -e
main="$(cd "$(dirname "$0")/../.." && pwd)"; src="${TABLE_RUNS:-/work/table/runs}"; bin="${BIN:-/work/long-runs/fewshot-1eea851}"
for h in $(ls $src); do [ -f $src/$h/eval.json ] || grep -q '"pretrain_epochs_done": 30' $src/$h/state.json || { echo "not finished: $h"; exit 1; }; done
mkdir -p $main/runs
if [ "$(realpath "$src")" != "$(realpath "$main/runs")" ]; then
  for h in $(ls $src); do rm -rf $main/runs/$h; cp -a $src/$h $main/runs/; rm -f $main/runs/$h/.lock; done
fi
cd $main
export FEWSHOT_DATA="${FEWSHOT_DATA:-$main/datasets}" FEWSHOT_MIRROR="${FEWSHOT_MIRROR:-$main/../shared/datasets}" RAYON_NUM_THREADS=2
for h in $(ls $src); do
  [ -f runs/$h/eval.json ] || continue
  before=$(mktemp); cp runs/$h/episodes.jsonl "$before"
  $bin eval --config runs/$h/cell.toml --device cpu --data-dir "$FEWSHOT_DATA" --manifests manifests --runs runs
  cmp runs/$h/episodes.jsonl "$before" || { echo "$h: the per-episode file differs"; exit 1; }
  echo "$h: re-evaluated, the same per-episode file"
done
# everything must be cached: a hash that came out otherwise would start hours of training
plan=$(cargo xtask reproduce --table 1 --profile cpu-conv4 --dry-run)
echo "$plan"
if echo "$plan" | grep -Eq '\| (new|resumes|stale)'; then echo "not all cached"; exit 1; fi
cargo xtask reproduce --table 1 --profile cpu-conv4 --binary $bin
ck=reports/cpu-conv4/checkpoints
git rm -q $ck/*.safetensors $ck/*.toml
mkdir -p $ck
for h in $(ls $src); do
  [ -f $src/$h/eval.json ] || continue   # the node has no test evaluation and no committed checkpoint
  cp $src/$h/checkpoint-best.safetensors $ck/$h.safetensors
  cp $src/$h/cell.toml $ck/$h.toml
done
git add $ck
git status --short
