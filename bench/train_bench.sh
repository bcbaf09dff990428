#!/usr/bin/env bash
# Training throughput and accuracy: Fashion-MNIST trained by `mlpc run`
# (bench/train/fashion_<model>_<ranks>.mlp) and, in the same run with the same
# settings, by the same model and loop in PyTorch Python (bench/train_torch.py,
# Debian's python3-torch: the same LibTorch underneath).
#
#   bench/train_bench.sh [MLPC_BINARY]      (default: build/tools/mlpc/mlpc)
#
# Environment:
#   EPOCHS=2          epochs per training run
#   LIMIT=60000       training rows read (the full set is 60,000)
#   BATCH=N           examples per step on each rank (default: each pipeline's `batch` param:
#                     128 on one rank, 64 on each of two, so both take the same steps)
#   MODELS="mlp cnn"  models to measure
#   RANKS="1 2"       rank counts to measure (2: data-parallel, one cpu a rank)
#   STRICT=1          exit 1 when a target below is missed
#   PYTHON=/usr/bin/python3   an interpreter with torch and numpy
#   KEEP_WORK=1       keep the mlpc run roots (a temporary directory)
#
# Stdout: `name: value unit` lines; notes and verdicts go to stderr.
# samples/s is the mean over epochs 2..E (epoch 1 is warm-up), or the one
# epoch when EPOCHS=1, on both sides; test accuracy is after the last epoch
# (mlpc: the last epoch's val.accuracy, the t10k set being the validate data).
# Targets: mlpc at least 1.0x PyTorch's samples/s in every row; with the full
# set and at least 2 epochs, test accuracy at least 0.87 (mlp) and 0.89 (cnn).
#
# Exit status: 0 on success; 1 when a run failed (or, with STRICT=1, a target
# was missed); 2 on a usage error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
mlpc=${1:-$root/build/tools/mlpc/mlpc}
epochs=${EPOCHS:-2}
limit=${LIMIT:-60000}
batch=${BATCH:-}
models=${MODELS:-mlp cnn}
ranks_list=${RANKS:-1 2}
python=${PYTHON:-/usr/bin/python3}

note() { printf '%s\n' "$*" >&2; }
die() { note "train_bench.sh: $*"; exit 2; }

[[ $# -le 1 ]] || die "usage: bench/train_bench.sh [MLPC_BINARY]"
[[ -x $mlpc ]] || die "mlpc binary not found or not executable: $mlpc (build it first, or pass its path)"
[[ $epochs =~ ^[0-9]+$ && $epochs -ge 1 ]] || die "EPOCHS must be an integer >= 1"
[[ $limit =~ ^[0-9]+$ && $limit -ge 1 ]] || die "LIMIT must be an integer >= 1"
[[ -z $batch || ($batch =~ ^[0-9]+$ && $batch -ge 1) ]] || die "BATCH must be an integer >= 1"
for m in $models; do [[ $m == mlp || $m == cnn ]] || die "bad model in MODELS: '$m' (mlp or cnn)"; done
for r in $ranks_list; do [[ $r == 1 || $r == 2 ]] || die "bad rank count in RANKS: '$r' (1 or 2)"; done
"$python" -c "import torch, numpy" 2>/dev/null ||
  die "$python cannot import torch and numpy (apt-get install python3-torch)"

work=$(mktemp -d "${TMPDIR:-/tmp}/mlpc-train-bench.XXXXXX")
if [[ ${KEEP_WORK:-0} != 1 ]]; then
  trap 'rm -rf -- "$work"' EXIT
else
  note "mlpc run roots kept in $work"
fi

# metrics.json (a JSON array of per-epoch objects) -> "SAMPLES_PER_S ACCURACY",
# with the same epoch rule as train_torch.py.
summarize() {
  "$python" - "$1" <<'EOF'
import json, sys
epochs = json.load(open(sys.argv[1]))
if not isinstance(epochs, list) or not epochs:
    sys.exit(f"{sys.argv[1]}: not a non-empty JSON array of epochs")
rates = [float(e["samples_per_s"]) for e in epochs]
rate = sum(rates[1:]) / len(rates[1:]) if len(rates) > 1 else rates[0]
acc = epochs[-1].get("val.accuracy")
print(f"{rate:.1f} {'nan' if acc is None else f'{float(acc):.4f}'}")
EOF
}

# ge A B: A >= B, as floats.
ge() { "$python" -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' "$1" "$2"; }

note "train_bench: EPOCHS=$epochs LIMIT=$limit BATCH=${batch:-per pipeline} MODELS='$models' RANKS='$ranks_list'; mlpc: $mlpc"
failed=0
missed=0
full=0
[[ $limit -ge 60000 && $epochs -ge 2 ]] && full=1
for m in $models; do
  for r in $ranks_list; do
    file=$root/bench/train/fashion_${m}_${r}.mlp
    name=${m}_${r}rank
    # Threads per rank: the cpus the pipeline's train stage asks for, so both sides match.
    threads=$(sed -n 's/^ *resources { cpu: \([0-9][0-9]*\) }.*/\1/p' "$file" | head -n1)
    [[ -n $threads ]] || die "$file: no 'resources { cpu: N }' line in its train stage"
    # The optimizer settings both sides use: the pipeline's param defaults (BATCH overrides the batch).
    param() { sed -n "s/^param $1: [a-z]* = \([^ ]*\).*/\1/p" "$file" | head -n1; }
    b=${batch:-$(param batch)} lr=$(param lr) gamma=$(param gamma)
    [[ -n $b && -n $lr && -n $gamma ]] || die "$file: needs params batch, lr and gamma"

    note "== $name: mlpc run $(basename "$file") ($threads thread(s) per rank)"
    mlpc_rate='' mlpc_acc=''
    run_root=$work/$name
    if "$mlpc" run --no-cache --run-root "$run_root" "$file" --set "epochs=$epochs" --set "limit=$limit" \
        --set "batch=$b" >"$work/$name.mlpc.log" 2>&1; then
      metrics=("$run_root"/runs/*/outputs/classifier/metrics.json)
      if [[ -f ${metrics[0]} ]] && out=$(summarize "${metrics[0]}"); then
        read -r mlpc_rate mlpc_acc <<<"$out"
        echo "mlpc_${name}_samples_per_s: $mlpc_rate samples/s"
        echo "mlpc_${name}_test_accuracy: $mlpc_acc fraction"
      else
        note "mlpc $name: no readable metrics.json under $run_root/runs/*/outputs/classifier/"
        failed=1
      fi
    else
      note "mlpc $name: the run failed; its last lines:"
      tail -n 5 "$work/$name.mlpc.log" >&2
      failed=1
    fi

    note "== $name: bench/train_torch.py"
    torch_rate='' torch_acc=''
    if out=$("$python" "$here/train_torch.py" --model "$m" --ranks "$r" --epochs "$epochs" --batch "$b" \
        --threads "$threads" --limit "$limit" --lr "$lr" --gamma "$gamma"); then
      echo "$out"
      torch_rate=$(sed -n "s/^torch_${name}_samples_per_s: \([^ ]*\) .*/\1/p" <<<"$out")
      torch_acc=$(sed -n "s/^torch_${name}_test_accuracy: \([^ ]*\) .*/\1/p" <<<"$out")
    else
      note "torch $name: train_torch.py failed"
      failed=1
    fi

    if [[ -n $mlpc_rate && -n $torch_rate ]]; then
      ratio=$("$python" -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")' \
        "$mlpc_rate" "$torch_rate")
      echo "ratio_${name}: $ratio mlpc/torch x"
      if ge "$ratio" 1.0; then
        note "PASS ratio_${name} $ratio >= 1.0x PyTorch"
      else
        note "MISS ratio_${name} $ratio < 1.0x PyTorch"
        missed=1
      fi
    fi
    if [[ -n $mlpc_acc ]]; then
      target=0.87
      [[ $m == cnn ]] && target=0.89
      if [[ $full != 1 ]]; then
        note "note: test accuracy target ($target) not judged: it is for the full set (LIMIT=60000) and EPOCHS >= 2"
      elif [[ $mlpc_acc != nan ]] && ge "$mlpc_acc" "$target"; then
        note "PASS mlpc_${name}_test_accuracy $mlpc_acc >= $target (torch: ${torch_acc:-n/a})"
      else
        note "MISS mlpc_${name}_test_accuracy $mlpc_acc < $target (torch: ${torch_acc:-n/a})"
        missed=1
      fi
    fi
  done
done

[[ $failed == 0 ]] || exit 1
[[ $missed == 0 || ${STRICT:-0} != 1 ]] || exit 1
exit 0
