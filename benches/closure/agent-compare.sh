#!/usr/bin/env bash
# ndeploy push with the agent vs `ndeploy push --no-agent` vs `nix copy`, in one run.
#
# Generations of a NixOS-like closure (the shape of closure.nix, scaled by
# AGENT_BENCH_SCALE, default 0.4), with realistic contents: every file is
# deterministic in its package's *name* (not its store hash), so a package
# that gets a new path only because a dependency changed has byte-identical
# files except those embedding store paths (a `lib/libmain.so` with its
# dependencies' paths inside, like RPATHs; a `bin/run` script; `deps`), and a
# package with a new version has one file changed in two places (2 KB
# inserted, 1 KB deleted):
#   gen1    the first deployment (pushed to every target, not compared)
#   gen2    5% of the leaves get a new version (-> they, the mids using them
#           and the system are new paths)
#   gen3    the shared core library gets a new version: every package that
#           references it is a new path (nearly the whole closure), its
#           files identical or differing only in embedded store hashes
# For each tool, on its own target that holds the previous generation:
# wall time, bytes on the wire (both directions, from the host side's
# counters in /proc/net/dev), as a share of the missing NAR bytes, and CPU
# (user+sys of everything the bench starts, from a cpuacct cgroup when the
# machine has one). Two links, each a veth pair into a network namespace the
# script creates and removes (nothing leaves the machine): `fast`, unshaped
# (loopback speed, but its counters see only the bench's traffic, unlike
# `lo` on a shared machine), and `slow`, limited to 100 Mbit/s each way
# with tc.
#
# Usage: benches/closure/agent-compare.sh [NDEPLOY_BINARY]   (default: target/release/ndeploy;
#        the agent binary next to it, or $NDEPLOY_AGENT)
# AGENT_BENCH_SCALE=1 for closure.nix's full size; AGENT_BENCH_LINKS=fast to skip the slow link;
# AGENT_BENCH_PERF=DIR records `perf record -a -g` of every gen3 push into DIR/<tool>-<link>.data.
# Needs root, openssh-server, util-linux (unshare), iproute2 (ip, tc), openssl, Nix 2.8+.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
nd=${1:-$repo/target/release/ndeploy}
[ -x "$nd" ] || { echo "no ndeploy binary at $nd (cargo build --release)" >&2; exit 1; }
agent=${NDEPLOY_AGENT:-$(dirname "$nd")/ndeploy-agent}
[ -x "$agent" ] || { echo "no agent binary at $agent (cargo build --release -p ndeploy-agent)" >&2; exit 1; }
export NDEPLOY_AGENT=$agent
scale=${AGENT_BENCH_SCALE:-0.4}
links=${AGENT_BENCH_LINKS:-fast slow}
netns=ndab$$
# The links' veth pairs and namespace go with the targets (harness.sh's cleanup).
harness_cleanup_extra() {
  for l in f s; do ip link del "$netns-${l}h" 2>/dev/null || true; done
  ip netns del "$netns" 2>/dev/null || true
}
. "$here/harness.sh"
harness_start ndeploy-agent-bench

# --- the generations ------------------------------------------------------------
cat > "$work/closure.nix" <<'NIX'
# closure.nix's shape; file contents from a keyed AES-CTR stream (openssl),
# keyed by package name, file and version: deterministic, incompressible.
{ tag, gen ? "g1", changed ? [ ], libVersion ? "g1", leaves, mids, bigs, huges }:
let
  mk = name: deps: files: size: version: derivation {
    inherit name deps files size version;
    system = builtins.currentSystem;
    PATH = "/usr/bin:/bin";
    builder = "/bin/sh";
    args = [ "-c" ''
      set -e
      rnd() { openssl enc -aes-128-ctr -nosalt -pbkdf2 -iter 1 -pass "pass:$1" < /dev/zero 2>/dev/null | head -c "$2"; }
      mkdir -p $out/share $out/bin $out/lib
      i=0
      while [ $i -lt $files ]; do
        if [ $i = 0 ] && [ "$version" != g1 ]; then
          # A new version: 2 KB inserted after the first third, 1 KB deleted in the last.
          third=$((size / 3))
          { rnd "$name-f0" $third; rnd "$name-$version" 2000; rnd "$name-f0" $((2 * third)) | tail -c $third;
            rnd "$name-f0" $size | tail -c $((size - 2 * third - 1000)); } > $out/share/f0
        else
          rnd "$name-f$i" $size > $out/share/f$i
        fi
        i=$((i+1))
      done
      echo "$version" > $out/version
      # Like an ELF object with RPATHs: the dependencies' store paths embedded.
      { for k in 1 2 3 4; do rnd "$name-so-$k" 16000; for d in $deps; do printf '%s\0' "$d/lib"; done; done; } > $out/lib/libmain.so
      printf '#!/bin/sh\nexport PATH=%s\nexec %s/bin/main "$@"\n' "$(for d in $deps; do printf '%s/bin:' $d; done)" $out > $out/bin/run
      chmod +x $out/bin/run
      for d in $deps; do echo $d >> $out/deps; ln -sfn $d $out/share/dep-$(basename $d | cut -c34-); done
    '' ];
  };
  n = i: toString i;
  lib = mk "${tag}-lib" [ ] 6 (5 * 1024 * 1024) libVersion;
  small = i: 20000 + (i * 7919) - ((i * 7919) / 280000) * 280000;
  versionOf = i: if builtins.elem i changed then "${gen}-${n i}" else "g1";
  leaf = builtins.genList (i: mk "${tag}-leaf-${n i}" [ lib ] (1 + i - (i / 4) * 4) (small i / (1 + i - (i / 4) * 4)) (versionOf i)) leaves;
  at = i: builtins.elemAt leaf (i - (i / leaves) * leaves);
  mid = builtins.genList (i: mk "${tag}-mid-${n i}" [ lib (at (i * 2)) (at (i * 2 + 1)) (at (i * 7 + 3)) ] 2 (small (i + 5000) / 2) "g1") mids;
  big = builtins.genList (i: mk "${tag}-big-${n i}" [ lib ] 5 (1024 * 1024) "g1") bigs;
  huge = builtins.genList (i: mk "${tag}-huge-${n i}" [ lib (at i) ] 4 (10 * 1024 * 1024) "g1") huges;
in
mk "${tag}-system" (mid ++ big ++ huge) 1 1000 gen
NIX
sz() { printf '%.0f' "$(echo "$1 * $scale" | bc -l)"; }
leaves=$(sz 1000) mids=$(sz 450) bigs=$(sz 40) huges=$(sz 5)
[ "$huges" -ge 1 ] || huges=1
changed=$(seq 3 20 $((leaves - 1)) | tr '\n' ' ')   # 5% of the leaves
shape=(--argstr tag "abench-$scale" --arg leaves "$leaves" --arg mids "$mids" --arg bigs "$bigs" --arg huges "$huges")
build() { nix-build "$work/closure.nix" --no-out-link -j 2 "${shape[@]}" "$@" 2>>"$work/build.log" || { tail -20 "$work/build.log" >&2; exit 1; }; }
echo "building 3 generations ($leaves leaves; the first run takes minutes)..." >&2
gen1=$(build)
gen2=$(build --argstr gen g2 --arg changed "[ $changed ]")
gen3=$(build --argstr gen g3 --arg changed "[ $changed ]" --argstr libVersion g3)
nar_of() { xargs -r nix-store -q --size | awk '{s+=$1} END {print s+0}'; }
new_paths() { comm -13 <(nix-store -qR "$1" | sort) <(nix-store -qR "$2" | sort); }
nar1=$(nix-store -qR "$gen1" | nar_of)
nar2=$(new_paths "$gen1" "$gen2" | nar_of); n2=$(new_paths "$gen1" "$gen2" | wc -l)
nar3=$(new_paths "$gen2" "$gen3" | nar_of); n3=$(new_paths "$gen2" "$gen3" | wc -l)
echo "gen1: $(nix-store -qR "$gen1" | wc -l) paths, $((nar1 / 1000000)) MB NAR"
echo "gen2 (5% of leaves new): $n2 new paths, $((nar2 / 1000000)) MB NAR missing on a gen1 target"
echo "gen3 (core library new): $n3 new paths, $((nar3 / 1000000)) MB NAR missing on a gen2 target"

# --- targets -----------------------------------------------------------------------
harness_client

# The links: a veth pair each, the target ends in one network namespace.
net() { case $1 in fast) echo 10.213.$(( $$ % 250 )) ;; slow) echo 10.214.$(( $$ % 250 )) ;; esac; }
dev() { case $1 in fast) echo "$netns-fh" ;; slow) echo "$netns-sh" ;; esac; }
ip netns add "$netns"
ip netns exec "$netns" ip link set lo up
for link in $links; do
  h=$(dev "$link"); n=${h%h}n
  ip link add "$h" type veth peer name "$n"
  ip link set "$n" netns "$netns"
  ip addr add "$(net "$link").1/24" dev "$h"
  ip link set "$h" up
  ip netns exec "$netns" ip addr add "$(net "$link").2/24" dev "$n"
  ip netns exec "$netns" ip link set "$n" up
  if [ "$link" = slow ]; then
    tc qdisc add dev "$h" root tbf rate 100mbit burst 128kb latency 50ms
    ip netns exec "$netns" tc qdisc add dev "$n" root tbf rate 100mbit burst 128kb latency 50ms
  fi
done

tools="nix-copy plain agent"
for link in $links; do for tool in $tools; do harness_target "$tool-$link" "$(net "$link").2" ip netns exec "$netns"; done; done

link_bytes() { # bytes over the link, both directions (host side's receive + transmit counters)
  awk -v d="$(dev "$1"):" '$1==d {printf "%.0f\n", $2+$10}' /proc/net/dev
}
secs=0 wire=0 cpu=0
measure() { # LINK CMD...: sets secs, wire, cpu
  local link=$1 b0 t0 t1 b1 c0 c1; shift
  c0=$(cpu_ticks); b0=$(link_bytes "$link"); t0=$(now)
  "$@" > "$work/last.out" 2> "$work/last.err" || { echo "FAILED: $*" >&2; cat "$work/last.err" "$work/last.out" >&2; exit 1; }
  t1=$(now); b1=$(link_bytes "$link")
  sleep 0.3
  c1=$(cpu_ticks)
  secs=$(echo "$t1 - $t0" | bc -l); wire=$((b1 - b0)); cpu=$(echo "($c1 - $c0) / $tck" | bc -l)
}
push() { # TOOL TARGET PATH
  case $1 in
    nix-copy) NIX_SSHOPTS="-F $client/.ssh/config" nix copy --no-check-sigs --to "ssh-ng://$2" "$3" ;;
    plain) HOME=$client "$nd" push --no-progress --no-agent --to "ssh://$2" "$3" ;;
    agent) HOME=$client XDG_CACHE_HOME=$work/cache "$nd" push --no-progress --stats --to "ssh://$2" "$3" ;;
  esac
}
results=()
echo
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
printf '%-5s %-6s %-9s %9s %12s %12s %9s %9s\n' link step tool wall missing-NAR wire wire/NAR CPU
for link in $links; do
  # gen1: the first deployment to empty targets (the agent installs itself; its
  # cache of manifests starts empty); gen2 and gen3 are the updates compared.
  for step in gen1 gen2 gen3; do
    case $step in gen1) p=$gen1 nar=$nar1 ;; gen2) p=$gen2 nar=$nar2 ;; gen3) p=$gen3 nar=$nar3 ;; esac
    for tool in $tools; do
      perf_pid=""
      if [ -n "${AGENT_BENCH_PERF:-}" ] && [ "$step" = gen3 ]; then
        mkdir -p "$AGENT_BENCH_PERF"
        perf record -q -a -g -o "$AGENT_BENCH_PERF/$tool-$link.data" 2>/dev/null & perf_pid=$!
        sleep 0.5
      fi
      measure "$link" push "$tool" "$tool-$link" "$p"
      if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
      printf '%-5s %-6s %-9s %7.2f s %9.1f MB %9.2f MB %8.2f%% %7.2f s\n' "$link" "$step" "$tool" "$secs" \
        "$(echo "$nar / 1000000" | bc -l)" "$(echo "$wire / 1000000" | bc -l)" "$(echo "100 * $wire / $nar" | bc -l)" "$cpu"
      [ "$tool" = agent ] && [ "$step" != gen1 ] && sed 's/^/      /' "$work/last.out"
      results+=("$link $step $tool $secs $wire $nar $cpu")
    done
  done
done

# Every target holds gen3's complete, valid closure.
for link in $links; do for tool in $tools; do
  r="local?root=$work/$tool-$link/root"
  nix-store --store "$r" --verify --check-contents 2>&1 | grep -v '^reading\|^checking' || true
  got=$(nix-store --store "$r" -qR "$gen3" | wc -l)
  [ "$got" = "$(nix-store -qR "$gen3" | wc -l)" ] || { echo "target $tool-$link is missing paths" >&2; exit 1; }
done; done

get() { printf '%s\n' "${results[@]}" | awk -v l="$1" -v s="$2" -v t="$3" -v f="$4" '$1==l && $2==s && $3==t {print $f}'; }
echo
for link in $links; do for step in gen2 gen3; do
  printf '%-4s %s: agent wire %.2f%% of missing NAR (goal %s), plain %.1f%%, nix copy %.1f%%; wall agent %.2f s, plain %.2f s, nix copy %.2f s; CPU agent %.2f s, plain %.2f s, nix copy %.2f s\n' \
    "$link" "$step" "$(echo "100 * $(get "$link" $step agent 5) / $(get "$link" $step agent 6)" | bc -l)" \
    "$([ $step = gen2 ] && echo '<= 2%' || echo '<= 10%')" \
    "$(echo "100 * $(get "$link" $step plain 5) / $(get "$link" $step plain 6)" | bc -l)" \
    "$(echo "100 * $(get "$link" $step nix-copy 5) / $(get "$link" $step nix-copy 6)" | bc -l)" \
    "$(get "$link" $step agent 4)" "$(get "$link" $step plain 4)" "$(get "$link" $step nix-copy 4)" \
    "$(get "$link" $step agent 7)" "$(get "$link" $step plain 7)" "$(get "$link" $step nix-copy 7)"
done; done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
