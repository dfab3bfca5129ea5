#!/usr/bin/env bash
# NAR hashing throughput: `ndeploy store hash-path --type sha256` against
# `nix-store --dump | sha256sum` and `nix-hash --type sha256` on the same tree.
#
# Usage: benches/nar-vs-nix.sh [SIZE_MB]   (default 500; env NDEPLOY_BENCH_NAR_MB also works)
# Builds the release binary, generates the tree (a quarter of the bytes in
# small files, the rest in files of up to 64 MiB) in a temporary directory,
# warms the page cache, then times each command with hyperfine if available,
# else with a loop over /usr/bin/time (best of 3). Prints MB/s (of NAR bytes)
# and the ratio to ndeploy.
set -euo pipefail
cd "$(dirname "$0")/.."

mb=${1:-${NDEPLOY_BENCH_NAR_MB:-500}}
runs=3
cargo build --release -p ndeploy >&2
bin=$PWD/target/release/ndeploy

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree=$work/tree
echo "generating a ${mb} MB tree in $tree" >&2
python3 - "$tree" "$mb" <<'EOF'
import os, sys
root, total = sys.argv[1], int(sys.argv[2]) << 20
small_total, written, i = total // 4, 0, 0
while written < small_total:
    d = os.path.join(root, "small", "%03d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    n = 1024 + (i * 7919) % (63 * 1024)
    with open(os.path.join(d, "f%d" % i), "wb") as f:
        f.write(os.urandom(n))
    written += n
    i += 1
os.makedirs(os.path.join(root, "large"), exist_ok=True)
j = 0
while written < total:
    n = min(total - written, 64 << 20)
    with open(os.path.join(root, "large", "blob%d" % j), "wb") as f:
        f.write(os.urandom(n))
    written += n
    j += 1
EOF

nar_bytes=$(nix-store --dump "$tree" | wc -c)
# The three must agree before their speed means anything.
ours=$("$bin" store hash-path --type sha256 "$tree")
theirs=$(nix-hash --type sha256 "$tree")
piped=$(nix-store --dump "$tree" | sha256sum | cut -d' ' -f1)
if [[ "$ours" != "$theirs" || "$ours" != "$piped" ]]; then
  echo "hash mismatch: ndeploy $ours, nix-hash $theirs, nix-store|sha256sum $piped" >&2
  exit 1
fi

names=("ndeploy store hash-path" "nix-store --dump | sha256sum" "nix-hash --type sha256")
cmds=(
  "$bin store hash-path --type sha256 $tree"
  "nix-store --dump $tree | sha256sum"
  "nix-hash --type sha256 $tree"
)

secs=()
if command -v hyperfine >/dev/null 2>&1; then
  json=$work/hyperfine.json
  hyperfine --warmup 1 --runs "$runs" --export-json "$json" "${cmds[@]}" >&2
  mapfile -t secs < <(python3 -c 'import json,sys; [print(r["median"]) for r in json.load(open(sys.argv[1]))["results"]]' "$json")
else
  for c in "${cmds[@]}"; do
    bash -c "$c" >/dev/null # warm-up
    best=
    for _ in $(seq "$runs"); do
      t=$( { /usr/bin/time -f %e bash -c "$c" >/dev/null; } 2>&1 | tail -1)
      if [[ -z "$best" ]] || python3 -c "import sys; sys.exit(not float(sys.argv[1]) < float(sys.argv[2]))" "$t" "$best"; then best=$t; fi
    done
    secs+=("$best")
  done
fi

echo
echo "NAR of ${mb} MB tree: $nar_bytes bytes; sha256 $ours"
python3 - "$nar_bytes" "${secs[@]}" <<EOF
import sys
nar = int(sys.argv[1]); secs = [float(s) for s in sys.argv[2:]]
names = """${names[0]}|${names[1]}|${names[2]}""".split("|")
for name, s in zip(names, secs):
    print(f"{name:32s} {s:8.3f} s  {nar / s / 1e6:8.0f} MB/s  {s / secs[0]:5.2f}x ndeploy's time")
EOF
