# The harness shared by compare.sh and agent-compare.sh (sourced, not run):
# a work directory cleaned up on exit, a cpuacct cgroup for CPU time, the
# client's SSH setup, and OpenSSH targets that each serve a private, empty
# Nix store at the standard path (sshd in its own mount namespace with a
# bind-mounted /nix and an empty /root).
#
# The sourcing script runs under `set -euo pipefail` and calls, in order:
#   harness_start PREFIX    $work=/tmp/PREFIX.XXXXXX, $pids, $cg; on exit:
#                           kill and reap $pids, run harness_cleanup_extra
#                           when the script defines it, leave and remove
#                           the cgroup, delete $work
#   harness_client          $client: a HOME with an ssh key, known_hosts and
#                           an ssh config that trusts only recorded host keys
#   harness_target NAME ADDR [WRAPPER...]
#                           a target NAME listening on ADDR (sshd started
#                           under WRAPPER, e.g. `ip netns exec NS`): its
#                           store is $work/NAME/root, its host key recorded
#                           in known_hosts, `ssh NAME` reaches it as root
# and measures with `now` (wall clock) and `cpu_ticks` (CPU ticks, $tck a
# second, of everything the bench starts: the cgroup's count when the
# machine has cgroup-v1 cpuacct, else the script with its reaped children
# plus the targets' sshds from /proc, which may miss processes killed
# unreaped).

export NIX_CONFIG="sandbox = false
substituters =
experimental-features = nix-command"

harness_cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if declare -F harness_cleanup_extra > /dev/null; then harness_cleanup_extra; fi
  if [ -n "$cg" ]; then echo $$ > /sys/fs/cgroup/cpuacct/cgroup.procs; sleep 0.2; rmdir "$cg" 2>/dev/null || true; fi
  rm -rf "$work"
}

harness_start() { # PREFIX
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  pids=()
  cg=""
  trap harness_cleanup EXIT INT TERM
  if [ -w /sys/fs/cgroup/cpuacct/cgroup.procs ] && mkdir "/sys/fs/cgroup/cpuacct/$1-$$" 2>/dev/null; then
    cg=/sys/fs/cgroup/cpuacct/$1-$$
    echo $$ > "$cg/cgroup.procs"
  fi
}

harness_client() {
  client=$work/client
  mkdir -p "$client/.ssh"
  ssh-keygen -q -t ed25519 -N '' -f "$client/.ssh/id_ed25519"
  : > "$client/.ssh/known_hosts"
  printf 'IdentityFile %s\nUserKnownHostsFile %s\nIdentitiesOnly yes\nBatchMode yes\nStrictHostKeyChecking yes\n\n' \
    "$client/.ssh/id_ed25519" "$client/.ssh/known_hosts" > "$client/.ssh/config"
  mkdir -p /run/sshd
}

harness_target() { # NAME ADDR [WRAPPER...]
  local name=$1 addr=$2 d=$work/$1 port
  shift 2
  mkdir -p "$d/root/nix/store" "$d/root/nix/var/nix" "$d/home"
  nix-store --store "local?root=$d/root" --init
  ssh-keygen -q -t ed25519 -N '' -f "$d/host_key"
  cp "$client/.ssh/id_ed25519.pub" "$d/authorized_keys"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$d/sshd_config" <<CFG
Port $port
ListenAddress $addr
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
UseDNS no
MaxStartups 100
MaxSessions 100
CFG
  # Inside the namespace, an empty /root too: root's shell rc files on the
  # bench machine (pyenv init...) would add ~0.2 s to every remote command,
  # for all tools alike; a deployment target's root has no such setup.
  "$@" unshare -m --propagation private -- sh -c "mount --bind '$d/root/nix' /nix && mount --bind '$d/home' /root && exec /usr/sbin/sshd -D -e -f '$d/sshd_config'" 2>"$d/sshd.log" &
  pids+=($!)
  for _ in $(seq 100); do
    if timeout 1 bash -c "exec 3<>/dev/tcp/$addr/$port; head -c 7 <&3" 2>/dev/null | grep -q SSH-2.0; then break; fi
    sleep 0.05
  done
  echo "[$addr]:$port $(cut -d' ' -f1,2 "$d/host_key.pub")" >> "$client/.ssh/known_hosts"
  printf 'Host %s\n  HostName %s\n  Port %s\n  User root\n\n' "$name" "$addr" "$port" >> "$client/.ssh/config"
}

now() { date +%s.%N; }
tck=$(getconf CLK_TCK)
cpu_ticks() {
  if [ -n "$cg" ]; then echo $(( $(cat "$cg/cpuacct.usage") * tck / 1000000000 )); return; fi
  local sum p
  sum=$(awk '{print $14+$15+$16+$17}' "/proc/$$/stat")
  for p in "$work"/*/sshd.pid; do
    [ -e "$p" ] || continue
    sum=$((sum + $(awk '{print $14+$15+$16+$17}' "/proc/$(cat "$p")/stat")))
  done
  echo "$sum"
}
