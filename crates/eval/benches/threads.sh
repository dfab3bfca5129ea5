#!/usr/bin/env bash
# threads.sh NDEPLOY J, in a fleet directory: per evaluation thread, seconds on CPU and seconds
# waiting in the run queue (from /proc/PID/task/*/schedstat, last sample before exit) of
# `ndeploy eval --all -j J --collect-every 0`, and the wall time: separates what the evaluator
# costs from what other load on the machine costs.
"$1" eval --all -j "$2" --collect-every 0 --no-progress > /dev/null 2>&1 &
pid=$!
declare -A last
start=$(date +%s.%N)
while kill -0 $pid 2>/dev/null; do
  for t in /proc/$pid/task/*; do
    n=$(cat $t/comm 2>/dev/null); s=$(cat $t/schedstat 2>/dev/null)
    [[ -n $s ]] && last[$n]="$s"
  done
  sleep 0.02
done
end=$(date +%s.%N)
wait $pid
for n in "${!last[@]}"; do
  read -r run wait slices <<< "${last[$n]}"
  awk -v n="$n" -v r=$run -v w=$wait 'BEGIN { if (r > 1e8) printf "  %-16s cpu %.2f s  runqueue wait %.2f s\n", n, r/1e9, w/1e9 }'
done
awk -v a=$start -v b=$end 'BEGIN { printf "  wall %.2f s\n", b - a }'
