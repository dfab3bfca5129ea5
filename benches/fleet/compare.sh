#!/usr/bin/env bash
# Fleet evaluation: ndeploy vs C++ Nix on generated fleets (benches/fleet/generate.rs).
#
#   benches/fleet/compare.sh [NDEPLOY_BINARY]
#   PACKAGES=0 benches/fleet/compare.sh      # the fleet without a package set
#
# 1. 100 hosts x 200 shared modules: ndeploy -j T and -j 1, nix-instantiate with
#    all hosts in one process and with one process per host (T at a time);
#    wall, CPU, peak RSS, ratios; drvPaths are checked to be identical.
# 2. Memory growth: 10 / 100 / 1000 hosts x 200 modules (ndeploy and Nix
#    all-in-one; per-host Nix only up to 100 hosts).
# Use a release build (cargo build --release -p ndeploy).
set -euo pipefail
ndeploy=${1:-${NDEPLOY:-target/release/ndeploy}}
threads=${THREADS:-$(nproc)}
modules=${MODULES:-200}
# Packages in the fleet's shared package set (default: the generator's, 400).
packages=${PACKAGES:-400}

echo "== $modules modules, $packages packages, 100 hosts =="
"$ndeploy" bench eval --hosts 100 --modules "$modules" --packages "$packages" --threads "$threads"

for hosts in 10 1000; do
  echo
  echo "== $modules modules, $packages packages, $hosts hosts =="
  extra=()
  [ "$hosts" -gt 100 ] && extra=(--no-per-host --no-single-thread)
  "$ndeploy" bench eval --hosts "$hosts" --modules "$modules" --packages "$packages" --threads "$threads" "${extra[@]}"
done
