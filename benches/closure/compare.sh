#!/usr/bin/env bash
# ndeploy push vs `nix copy --to ssh-ng://` on loopback, measured in one run.
#
# Builds the NixOS-like closure of closure.nix twice (generation 1, and
# generation 2 with 5% of the leaves changed) in the local store, starts
# OpenSSH servers on 127.0.0.1, each in its own mount namespace with a
# private /nix (so `nix-daemon --stdio` there serves an empty store at the
# standard path), and times, for both tools on separate fresh targets:
#   full    generation 1 to an empty target
#   update  generation 2 to the same target
#   noop    generation 2 again (best and median of 5)
#   4x      generation 1 to 4 empty targets at once (ndeploy: one process;
#           nix copy: 4 processes in parallel)
# Bytes on the wire are the `lo` receive counter of /proc/net/dev around
# each step (other loopback traffic on the machine adds to them); ndeploy
# also prints its own count per target connection (`push -v`).
#
# Usage: benches/closure/compare.sh [NDEPLOY_BINARY]   (default: target/release/ndeploy)
# PUSH_BENCH_SETUP_ONLY=SECS: build the closures, start the targets, print
# the client HOME and the two generations, keep them up SECS seconds (or
# until killed), measure nothing (for profiling by hand).
# Needs root, openssh-server, util-linux (unshare), Nix 2.8+. Stops its
# sshds on exit and deletes their stores; the built closures stay in the
# local store (garbage, collectable).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
nd=${1:-$repo/target/release/ndeploy}
[ -x "$nd" ] || { echo "no ndeploy binary at $nd (cargo build --release -p ndeploy)" >&2; exit 1; }
. "$here/harness.sh"
harness_start ndeploy-push-bench

# --- the closures ----------------------------------------------------------
changed=$(seq 3 20 999 | tr '\n' ' ')   # 50 of 1000 leaves
echo "building generation 1 and 2 (first run takes a few minutes)..." >&2
gen1=$(nix-build "$here/closure.nix" --no-out-link -j 2 --argstr tag bench 2>>"$work/build.log")
gen2=$(nix-build "$here/closure.nix" --no-out-link -j 2 --argstr tag bench --argstr gen g2 --arg changed "[ $changed ]" 2>>"$work/build.log")
paths1=$(nix-store -qR "$gen1" | wc -l)
nar1=$(nix-store -qR "$gen1" | xargs nix-store -q --size | awk '{s+=$1} END {print s}')
new2=$(comm -13 <(nix-store -qR "$gen1" | sort) <(nix-store -qR "$gen2" | sort))
nnew2=$(echo "$new2" | wc -l)
nar2=$(echo "$new2" | xargs nix-store -q --size | awk '{s+=$1} END {print s}')
echo "generation 1: $paths1 paths, $((nar1 / 1000000)) MB NAR; generation 2: $nnew2 new paths, $((nar2 / 1000000)) MB NAR"

# --- targets -----------------------------------------------------------------
harness_client

alltargets="nix1 nd1 nix4a nix4b nix4c nix4d nd4a nd4b nd4c nd4d"
for t in $alltargets; do harness_target "$t" 127.0.0.1; done

lo_bytes() { awk '/^ *lo:/ {print $2}' /proc/net/dev; }
# CPU time (all cores) of everything this script starts: the client tools,
# their ssh processes, the target sshds with their sessions and nix-daemons
# (harness.sh's cpu_ticks). Other load on the machine stretches wall time
# but not this.
secs=0 wire=0 cpu=0 ccpu=0
# `times` in a subshell: user and sys CPU of the client side (the tool and
# its ssh processes); the rest of `cpu` is the targets' (sshd, nix-daemon).
client_cpu() { sed -n 2p "$1" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); s += a[1] * 60 + a[2] } print s }'; }
measure() { # measure CMD...: sets secs, wire, cpu, ccpu
  local b0 t0 t1 b1 c0 c1
  c0=$(cpu_ticks); b0=$(lo_bytes); t0=$(now)
  ( "$@" > "$work/last.out" 2> "$work/last.err"; rc=$?; times > "$work/times.out"; exit $rc ) \
    || { echo "FAILED: $*" >&2; cat "$work/last.err" >&2; exit 1; }
  t1=$(now); b1=$(lo_bytes)
  sleep 0.3 # let the target sessions end and be reaped
  c1=$(cpu_ticks)
  secs=$(echo "$t1 - $t0" | bc -l); wire=$((b1 - b0)); cpu=$(echo "($c1 - $c0) / $tck" | bc -l)
  ccpu=$(client_cpu "$work/times.out")
}
nixcopy() { NIX_SSHOPTS="-F $client/.ssh/config" nix copy --no-check-sigs --to "ssh-ng://$1" "$2"; }
# The plain worker-protocol push (the agent has its own comparison, agent-compare.sh).
plain=(); "$nd" push --help | grep -q -- --no-agent && plain=(--no-agent)
ndpush() { local p=$1; shift; local to=(); for t in "$@"; do to+=(--to "ssh://$t"); done; HOME=$client "$nd" push -v --no-progress "${plain[@]}" "${to[@]}" "$p"; }
nix4() { local ps=(); for t in nix4a nix4b nix4c nix4d; do nixcopy "$t" "$1" & ps+=($!); done; for p in "${ps[@]}"; do wait "$p"; done; }

row() { printf '%-8s %-10s %9.3f s %10.1f MB/s  NAR %8.1f MB  wire %8.1f MB  CPU %7.2f s (client %.2f, targets %.2f)\n' "$1" "$2" "$3" "$(echo "$4 / $3 / 1000000" | bc -l)" "$(echo "$4 / 1000000" | bc -l)" "$(echo "$5 / 1000000" | bc -l)" "$cpu" "$ccpu" "$(echo "$cpu - $ccpu" | bc -l)"; }
results=()
record() { row "$@"; results+=("$1 $2 $3 $cpu"); }

[ -n "${PUSH_BENCH_SETUP_ONLY:-}" ] && { echo "targets up; client HOME=$client; gen1=$gen1 gen2=$gen2"; sleep "$PUSH_BENCH_SETUP_ONLY" & sleeper=$!; pids+=("$sleeper"); wait "$sleeper"; exit 0; }
echo
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs (other work on the machine slows both tools)"
printf '%-8s %-10s %11s %15s %15s %15s %13s\n' step tool wall throughput NAR-sent on-lo CPU-all
measure nixcopy nix1 "$gen1";  record full nix-copy "$secs" "$nar1" "$wire"
# ndeploy's own account (-v): stages and the bytes on each target's TCP connection.
ndinfo() { sed -n 's/^\(ssh:\/\/.*\)$/         \1/p' "$work/last.err"; }
measure ndpush "$gen1" nd1;    record full ndeploy "$secs" "$nar1" "$wire"; ndinfo
measure nixcopy nix1 "$gen2";  record update nix-copy "$secs" "$nar2" "$wire"
measure ndpush "$gen2" nd1;    record update ndeploy "$secs" "$nar2" "$wire"; ndinfo
for tool in nix-copy ndeploy; do
  times=()
  for _ in 1 2 3 4 5; do
    if [ $tool = nix-copy ]; then measure nixcopy nix1 "$gen2"; else measure ndpush "$gen2" nd1; fi
    times+=("$secs")
  done
  sorted=$(printf '%s\n' "${times[@]}" | sort -n)
  printf '%-8s %-10s %9.3f s best, %.3f s median (5 runs), wire %.1f KB, CPU %.2f s (last run)\n' noop $tool "$(echo "$sorted" | head -1)" "$(echo "$sorted" | sed -n 3p)" "$(echo "$wire / 1000" | bc -l)" "$cpu"
  [ $tool = ndeploy ] && sed -n 's/^/         stages (last run): /p' "$work/last.err"
  results+=("noop $tool $(echo "$sorted" | sed -n 3p)")
done
measure nix4 "$gen1";                          record 4x nix-copy "$secs" "$((4 * nar1))" "$wire"
measure ndpush "$gen1" nd4a nd4b nd4c nd4d;    record 4x ndeploy "$secs" "$((4 * nar1))" "$wire"; ndinfo

# Every target must hold a complete, valid closure.
for t in nix1 nd1; do nix-store --store "local?root=$work/$t/root" --verify --check-contents 2>&1 | grep -v '^reading\|^checking' || true; done
for t in nix1 nd1; do
  got=$(nix-store --store "local?root=$work/$t/root" -qR "$gen2" | wc -l)
  [ "$got" = "$(nix-store -qR "$gen2" | wc -l)" ] || { echo "target $t is missing paths" >&2; exit 1; }
done
for t in nd4a nd4b nd4c nd4d; do
  got=$(nix-store --store "local?root=$work/$t/root" -qR "$gen1" | wc -l)
  [ "$got" = "$paths1" ] || { echo "target $t is missing paths" >&2; exit 1; }
done

get() { printf '%s\n' "${results[@]}" | awk -v s="$1" -v t="$2" -v f="${3:-3}" '$1==s && $2==t {print $f}'; }
echo
printf 'full copy: ndeploy %.2fx faster than nix copy (goal >= 3x); %.2fx less CPU\n' "$(echo "$(get full nix-copy) / $(get full ndeploy)" | bc -l)" "$(echo "$(get full nix-copy 4) / $(get full ndeploy 4)" | bc -l)"
printf 'update:    ndeploy %.2fx faster than nix copy\n' "$(echo "$(get update nix-copy) / $(get update ndeploy)" | bc -l)"
printf 'no-op:     ndeploy %.3f s median (goal <= 0.15 s), nix copy %.3f s\n' "$(get noop ndeploy)" "$(get noop nix-copy)"
printf '4 targets: ndeploy %.2fx the time of one (goal < 2x); nix copy x4 in parallel %.2fx\n' "$(echo "$(get 4x ndeploy) / $(get full ndeploy)" | bc -l)" "$(echo "$(get 4x nix-copy) / $(get full nix-copy)" | bc -l)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
