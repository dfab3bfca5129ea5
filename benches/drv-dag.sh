#!/bin/sh
# CPU time (user+sys) of `ndeploy instantiate` vs `nix-instantiate
# --readonly-mode` printing the .drv paths of the generated DAG
# (benches/gen-drv-dag.sh), mean of RUNS runs each; checks the outputs agree.
#   benches/drv-dag.sh [N=3000] [RUNS=10] [NDEPLOY=target/release/ndeploy]
# The ratio depends on N: nix-instantiate spends ~16 ms CPU starting up
# (ndeploy ~2.5 ms), a sixth of its time at 3000 derivations but 2% at
# 20000, and both grow a little faster than N (a larger heap, more cache
# misses per derivation). Under load, compare runs made at the same time.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
n=${1:-3000}
runs=${2:-10}
nd=${3:-$here/../target/release/ndeploy}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$here/gen-drv-dag.sh" "$n" > "$tmp/dag.nix"

# mean_cpu CMD...: mean user+sys seconds of $runs runs (timed together,
# as /usr/bin/time only resolves 10 ms per run).
mean_cpu() {
  /usr/bin/time -f "%U %S" -o "$tmp/t" sh -c '
    n=$1; shift; i=0
    while [ $i -lt "$n" ]; do "$@" > "$0" 2>/dev/null; i=$((i + 1)); done' "$tmp/out" "$runs" "$@"
  awk -v n="$runs" '{ printf "%.4f", ($1 + $2) / n }' "$tmp/t"
}

nix_t=$(mean_cpu nix-instantiate --readonly-mode "$tmp/dag.nix")
cp "$tmp/out" "$tmp/nix.out"
nd_t=$(mean_cpu "$nd" instantiate "$tmp/dag.nix")
cmp -s "$tmp/out" "$tmp/nix.out" || { echo "outputs differ!" >&2; exit 1; }
echo "drv DAG of $n derivations (mean of $runs runs, CPU seconds user+sys; load average $(cut -d' ' -f1-3 /proc/loadavg)):"
echo "  nix-instantiate --readonly-mode  $nix_t"
echo "  ndeploy instantiate              $nd_t"
awk -v a="$nd_t" -v b="$nix_t" 'BEGIN { printf "  ratio ndeploy/nix                %.2fx\n", a / b }'
