#!/usr/bin/env bash
# NAR hashing throughput: `ndeploy store hash-path --type sha256` against
# `nix-store --dump | sha256sum` and `nix-hash --type sha256` on the same tree.
#
# Usage: benches/nar-vs-nix.sh [SIZE_MB]   (default 500; env NDEPLOY_BENCH_NAR_MB also works;
#        NDEPLOY_BIN=path/to/ndeploy skips the release build)
# Builds the release binary, generates the tree (a quarter of the bytes in
# small files, the rest in files of up to 64 MiB) in a temporary directory,
# warms the page cache, then times each command with hyperfine if available,
# else with a loop over /usr/bin/time (best of 3). Prints the wall time, MB/s
# (of NAR bytes), the ratio to ndeploy and the CPU time (user+sys) of each.
set -euo pipefail
cd "$(dirname "$0")/.."

mb=${1:-${NDEPLOY_BENCH_NAR_MB:-500}}
runs=3
if [[ -n "${NDEPLOY_BIN:-}" ]]; then
  bin=$NDEPLOY_BIN # an already built binary (skips the release build)
else
  cargo build --release -p ndeploy >&2
  bin=$PWD/target/release/ndeploy
fi

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

# Per command: the best wall-clock seconds, and the CPU seconds (user+sys) of that run.
secs=()
cpus=()
if command -v hyperfine >/dev/null 2>&1; then
  json=$work/hyperfine.json
  hyperfine --warmup 1 --runs "$runs" --export-json "$json" "${cmds[@]}" >&2
  mapfile -t secs < <(python3 -c 'import json,sys; [print(r["min"]) for r in json.load(open(sys.argv[1]))["results"]]' "$json")
  mapfile -t cpus < <(python3 -c 'import json,sys; [print(r["user"] + r["system"]) for r in json.load(open(sys.argv[1]))["results"]]' "$json")
else
  for c in "${cmds[@]}"; do
    bash -c "$c" >/dev/null # warm-up
    best=
    cpu=
    for _ in $(seq "$runs"); do
      read -r t u s < <({ /usr/bin/time -f '%e %U %S' bash -c "$c" >/dev/null; } 2>&1 | tail -1)
      if [[ -z "$best" ]] || python3 -c "import sys; sys.exit(not float(sys.argv[1]) < float(sys.argv[2]))" "$t" "$best"; then
        best=$t
        cpu=$(python3 -c "import sys; print(float(sys.argv[1]) + float(sys.argv[2]))" "$u" "$s")
      fi
    done
    secs+=("$best")
    cpus+=("$cpu")
  done
fi

echo
echo "NAR of the ${mb} MB tree: $nar_bytes bytes, sha256 $ours; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$nar_bytes" "${#cmds[@]}" "${secs[@]}" "${cpus[@]}" "${names[@]}" <<'PY'
import sys
nar, n = int(sys.argv[1]), int(sys.argv[2])
rest = sys.argv[3:]
secs = [float(s) for s in rest[:n]]
cpus = [float(s) for s in rest[n:2 * n]]
names = rest[2 * n:3 * n]
print(f"{'':32s} {'wall':>9s} {'MB/s':>7s} {'vs ndeploy':>10s} {'cpu (u+s)':>10s}")
for name, s, c in zip(names, secs, cpus):
    print(f"{name:32s} {s:8.3f}s {nar / s / 1e6:7.0f} {s / secs[0]:9.2f}x {c:9.3f}s")
PY
