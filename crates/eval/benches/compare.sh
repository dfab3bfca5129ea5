#!/usr/bin/env bash
# Compare CPU time and peak RSS of `ndeploy instantiate --eval --strict` with
# `nix-instantiate --eval --strict` on the benchmark expressions.
# Usage: compare.sh [NDEPLOY_BINARY] [NIXPKGS_LIB_DIR]
# With a nixpkgs lib checkout, also runs lib/tests/misc.nix and a generated
# evalModules workload.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
nd=${1:-$here/../../../target/release/ndeploy}
lib=${2:-}
exprs=("$here"/exprs/*.nix)
if [[ -n $lib ]]; then
  # misc.nix needs `derivation`, which the store layer provides.
  if [[ $("$nd" instantiate --eval -E 'builtins ? derivation') == true ]]; then
    exprs+=("$lib/lib/tests/misc.nix")
  fi
  gendir=$(mktemp -d)
  trap 'rm -rf "$gendir"' EXIT
  gen=$gendir/evalModules-300.nix
  "$here/gen-modules.sh" "$lib" 300 > "$gen"
  exprs+=("$gen")
fi
measure() { # prints "user+sys seconds" and "max RSS KiB": the best of 3 runs
  local tf best=""
  tf=$(mktemp)
  for _ in 1 2 3; do
    /usr/bin/time -o "$tf" -f '%U %S %M' "$@" > /dev/null 2>&1 || true
    best=$( (echo "$best"; awk '{ printf "%.2f %d\n", $1 + $2, $3 }' "$tf") | sed '/^$/d' | sort -n | head -1)
  done
  rm -f "$tf"
  echo "$best"
}
printf '%-28s %10s %10s %7s %10s %10s %7s\n' bench nix-cpu nd-cpu ratio nix-rssK nd-rssK ratio
for e in "${exprs[@]}"; do
  read -r ncpu nrss < <(measure nix-instantiate --eval --strict "$e")
  read -r dcpu drss < <(measure "$nd" instantiate --eval --strict "$e")
  printf '%-28s %10s %10s %7.2f %10s %10s %7.2f\n' "$(basename "$e" .nix)" "$ncpu" "$dcpu" \
    "$(awk -v a="$dcpu" -v b="$ncpu" 'BEGIN { print (b > 0 ? a / b : 0) }')" "$nrss" "$drss" \
    "$(awk -v a="$drss" -v b="$nrss" 'BEGIN { print (b > 0 ? a / b : 0) }')"
done
