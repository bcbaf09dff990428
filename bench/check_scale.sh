#!/usr/bin/env bash
# Compile-time scaling: `mlpc check` on generated pipelines of N stages, side
# by side, in the same run, with a Snakemake dry run (`snakemake -n`) of one
# rule expanded to N jobs.
#
#   bench/check_scale.sh [MLPC_BINARY]      (default: build/tools/mlpc/mlpc)
#
# Environment:
#   SIZES="1000 10000 100000"  stage / job counts to measure
#   REPEAT=3                   runs per measurement; the best wall time counts
#   SNAKEMAKE_MAX=N            skip Snakemake above N jobs (prints `skipped`)
#   SNAKEMAKE_ONCE_OVER=60     one Snakemake run only once a run takes longer
#                              than this many seconds
#   STRICT=1                   also exit 1 when a target below is missed
#   WORKDIR=DIR                where generated files go (default: a temporary
#                              directory, removed at the end); KEEP_WORK=1
#                              keeps the temporary one
#   PYTHON=python3             interpreter for the generators and measure.py
#
# Stdout carries only `name: value unit` lines; notes and the target verdicts
# go to stderr. Targets (docs/benchmarks.md): 10,000 stages checked in under
# 0.2 s, at least 25x faster than the Snakemake dry run of the same size, and
# linear growth (time per stage not growing with N).
#
# Exit status: 0 on success; 1 when `mlpc check` fails on a generated file
# (or, with STRICT=1, when a target is missed); 2 on a usage error; 3 when
# only the Snakemake side failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
mlpc=${1:-$root/build/tools/mlpc/mlpc}
sizes=${SIZES:-1000 10000 100000}
repeat=${REPEAT:-3}
snakemake_max=${SNAKEMAKE_MAX:-}
once_over=${SNAKEMAKE_ONCE_OVER:-60}
python=${PYTHON:-python3}

note() { printf '%s\n' "$*" >&2; }
die() { note "check_scale.sh: $*"; exit 2; }

[[ $# -le 1 ]] || die "usage: bench/check_scale.sh [MLPC_BINARY]"
[[ -x $mlpc ]] || die "mlpc binary not found or not executable: $mlpc (build it first, or pass its path)"
for n in $sizes; do
  [[ $n =~ ^[0-9]+$ && $n -ge 2 ]] || die "bad size in SIZES: '$n' (each must be an integer >= 2)"
done
[[ -z $snakemake_max || $snakemake_max =~ ^[0-9]+$ ]] || die "SNAKEMAKE_MAX must be an integer"

if [[ -n ${WORKDIR:-} ]]; then
  work=$WORKDIR
  mkdir -p "$work"
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/mlpc-check-scale.XXXXXX")
  if [[ ${KEEP_WORK:-0} != 1 ]]; then
    trap 'rm -rf -- "$work"' EXIT
  else
    note "generated files kept in $work"
  fi
fi

have_snakemake=1
if ! command -v snakemake >/dev/null 2>&1; then
  have_snakemake=0
  note "note: snakemake not found on PATH; its side is skipped"
fi

# fmt PRINTF_FORMAT EXPR: evaluate a float expression (awk) and format it.
fmt() { awk -v f="$1" "BEGIN { printf f, ($2) }"; }

note "mlpc: $mlpc"
[[ $have_snakemake == 1 ]] && note "snakemake: $(snakemake --version 2>/dev/null || echo '?')"
note "sizes: $sizes; best of $repeat runs"

declare -A check_t snake_t
status=0
snake_failed=0

for n in $sizes; do
  mlp=$work/scale_$n.mlp
  "$python" "$here/gen_pipeline.py" "$n" "$mlp"

  # A first run must succeed; it also shows any diagnostics (and warms the
  # page cache for the timed runs).
  if ! out=$("$mlpc" check "$mlp" 2>&1); then
    note "check_scale.sh: mlpc check failed on the generated $n-stage pipeline ($mlp):"
    printf '%s\n' "$out" | head -n 20 >&2
    [[ -n ${WORKDIR:-} || ${KEEP_WORK:-0} == 1 ]] || trap - EXIT
    note "(generated files kept in $work)"
    exit 1
  fi
  if [[ -n $out ]]; then
    note "note: mlpc check printed diagnostics for $n stages (first lines):"
    printf '%s\n' "$out" | head -n 5 >&2
  fi

  t= rss= rc=
  read -r t rss rc _ < <("$python" "$here/measure.py" --repeat "$repeat" -- "$mlpc" check "$mlp") || true
  if [[ ${rc:-1} != 0 ]]; then
    note "check_scale.sh: mlpc check failed on the generated $n-stage pipeline (exit ${rc:-?})"
    exit 1
  fi
  check_t[$n]=$t
  echo "check_${n}_stages_time: $(fmt '%.4f' "$t") s"
  echo "check_${n}_stages_peak_rss: $(fmt '%.1f' "$rss") MiB"
  echo "check_time_per_stage_${n}: $(fmt '%.2f' "$t / $n * 1e6") us"

  if [[ $have_snakemake == 0 ]] || [[ -n $snakemake_max && $n -gt $snakemake_max ]]; then
    echo "snakemake_dry_run_${n}_jobs_time: skipped"
    echo "snakemake_dry_run_${n}_jobs_peak_rss: skipped"
    echo "check_vs_snakemake_${n}: skipped"
    continue
  fi
  smk=$work/snakemake_$n
  "$python" "$here/gen_snakefile.py" "$n" "$smk"
  st= srss= src= sruns=
  read -r st srss src sruns < <("$python" "$here/measure.py" --repeat "$repeat" \
      --once-over "$once_over" --cwd "$smk" -- \
      snakemake -n --cores 1 -s Snakefile --quiet) || true
  if [[ ${src:-1} == 0 ]]; then
    snake_t[$n]=$st
    echo "snakemake_dry_run_${n}_jobs_time: $(fmt '%.3f' "$st") s"
    echo "snakemake_dry_run_${n}_jobs_peak_rss: $(fmt '%.1f' "$srss") MiB"
    echo "snakemake_dry_run_time_per_job_${n}: $(fmt '%.2f' "$st / $n * 1e6") us"
    echo "check_vs_snakemake_${n}: $(fmt '%.1f' "$st / $t") x"
    [[ $sruns == "$repeat" ]] || note "note: snakemake dry run of $n jobs took over ${once_over} s: measured once"
  else
    note "check_scale.sh: snakemake -n failed for $n jobs (in $smk)"
    echo "snakemake_dry_run_${n}_jobs_time: failed"
    echo "check_vs_snakemake_${n}: failed"
    snake_failed=1
  fi
done

# Growth between consecutive sizes: linear growth gives a time ratio equal to
# the size ratio (fixed start-up cost makes small sizes grow slower).
prev=
for n in $sizes; do
  if [[ -n $prev ]]; then
    echo "check_time_ratio_${n}_vs_${prev}: $(fmt '%.2f' "${check_t[$n]} / ${check_t[$prev]}") x"
  fi
  prev=$n
done

# Target verdicts, on stderr.
missed=0
verdict() {  # verdict NAME OK(0/1) DETAIL
  if [[ $2 == 1 ]]; then note "target $1: PASS ($3)"; else note "target $1: FAIL ($3)"; missed=1; fi
}
if [[ -n ${check_t[10000]:-} ]]; then
  verdict "10000 stages checked in under 0.2 s" \
    "$(fmt '%d' "${check_t[10000]} < 0.2")" "$(fmt '%.4f' "${check_t[10000]}") s"
fi
for n in $sizes; do
  if [[ -n ${snake_t[$n]:-} ]]; then
    verdict "check at least 25x faster than snakemake -n at $n" \
      "$(fmt '%d' "${snake_t[$n]} / ${check_t[$n]} >= 25")" "$(fmt '%.1f' "${snake_t[$n]} / ${check_t[$n]}") x"
  fi
done
prev=
for n in $sizes; do
  # Linear: from each size to the next (at least 10,000 stages, where the
  # fixed start-up cost no longer dominates), time grows at most 1.5x faster
  # than the stage count.
  if [[ -n $prev && $prev -ge 10000 ]]; then
    verdict "linear growth $prev -> $n" \
      "$(fmt '%d' "${check_t[$n]} / ${check_t[$prev]} <= 1.5 * $n / $prev")" \
      "$(fmt '%.2f' "${check_t[$prev]} / $prev * 1e6") -> $(fmt '%.2f' "${check_t[$n]} / $n * 1e6") us per stage"
  fi
  prev=$n
done

if [[ ${STRICT:-0} == 1 && $missed == 1 ]]; then status=1; fi
if [[ $status == 0 && $snake_failed == 1 ]]; then status=3; fi
exit "$status"
