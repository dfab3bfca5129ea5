#!/bin/sh
# CPU time (user+sys) of `ndeploy instantiate` vs `nix-instantiate
# --readonly-mode` printing the .drv paths of the generated DAG
# (benches/gen-drv-dag.sh), best of RUNS runs each; checks the outputs agree.
#   benches/drv-dag.sh [N=3000] [RUNS=5] [NDEPLOY=target/release/ndeploy]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
n=${1:-3000}
runs=${2:-5}
nd=${3:-$here/../target/release/ndeploy}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$here/gen-drv-dag.sh" "$n" > "$tmp/dag.nix"

# best_cpu CMD...: the smallest user+sys seconds over $runs runs.
best_cpu() {
  best=
  i=0
  while [ $i -lt "$runs" ]; do
    /usr/bin/time -f "%U %S" -o "$tmp/t" "$@" > "$tmp/out" 2>/dev/null
    t=$(awk '{ printf "%.3f", $1 + $2 }' "$tmp/t")
    if [ -z "$best" ] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$t; fi
    i=$((i + 1))
  done
  echo "$best"
}

nix_t=$(best_cpu nix-instantiate --readonly-mode "$tmp/dag.nix")
cp "$tmp/out" "$tmp/nix.out"
nd_t=$(best_cpu "$nd" instantiate "$tmp/dag.nix")
cmp -s "$tmp/out" "$tmp/nix.out" || { echo "outputs differ!" >&2; exit 1; }
echo "drv DAG of $n derivations (best of $runs, CPU seconds user+sys):"
echo "  nix-instantiate --readonly-mode  $nix_t"
echo "  ndeploy instantiate              $nd_t"
awk -v a="$nd_t" -v b="$nix_t" 'BEGIN { printf "  ratio ndeploy/nix                %.2fx\n", a / b }'
