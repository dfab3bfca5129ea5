# ndeploy activation agent: runs detached on the target (setsid nohup), so it
# outlives the SSH session that started it.
# Arguments: GOAL TOPLEVEL PROFILE RUN_DIR TIMEOUT_SECS WAIT(1|0)
# Files in RUN_DIR: log (activation output), status (its exit code),
# confirm / abort (written by ndeploy), result (the outcome, written last),
# keys-undo.sh (how to undo the keys uploaded for this run; see keys.rs).
goal=$1 top=$2 profile=$3 run=$4 timeout=$5 wait=$6
log=$run/log
finish() { echo "$1" > "$run/result.tmp" && mv "$run/result.tmp" "$run/result"; exit 0; }
# Keys uploaded for this run: put the previous ones back, or (kept) drop the backups.
restore_keys() { [ ! -e "$run/keys-undo.sh" ] || sh "$run/keys-undo.sh" >> "$run/rollback.log" 2>&1; }
keep_keys() { rm -rf "$run/keys-undo" "$run/keys-undo.sh"; }
exec 9>"$(dirname "$run")/lock"
if ! flock -n 9; then
  echo "another ndeploy activation is running on this host" >> "$log"
  echo busy > "$run/status"
  restore_keys
  finish "failed another-activation-running"
fi
mkdir -p "$(dirname "$profile")"
prev=$(readlink "$profile" 2>/dev/null || true)
gen_of() { echo "$1" | sed -n 's/^.*-\([0-9][0-9]*\)-link$/\1/p'; }
# `test` activates without a new generation (as nixos-rebuild test).
if [ "$goal" != test ] && ! nix-env -p "$profile" --set "$top" >> "$log" 2>&1; then
  echo profile > "$run/status"
  restore_keys
  finish "failed setting-profile"
fi
new=$(readlink "$profile" 2>/dev/null || true)
rollback() {
  restore_keys
  {
    echo "rolling back: $1"
    if [ "$goal" = test ]; then
      if [ -e "$profile" ]; then "$profile/bin/switch-to-configuration" test; fi
    elif [ -n "$prev" ] && [ "$prev" != "$new" ]; then
      nix-env -p "$profile" --switch-generation "$(gen_of "$prev")"
      nix-env -p "$profile" --delete-generations "$(gen_of "$new")"
      "$profile/bin/switch-to-configuration" "$goal"
    elif [ -z "$prev" ]; then
      rm -f "$profile" "$(dirname "$profile")/$new"
    fi
  } >> "$run/rollback.log" 2>&1
  finish "rolled-back $1"
}
"$top/bin/switch-to-configuration" "$goal" >> "$log" 2>&1
rc=$?
echo "$rc" > "$run/status"
[ "$rc" = 0 ] || rollback activation-failed
[ "$wait" = 1 ] || { keep_keys; finish done; }
n=$((timeout * 10))
while [ "$n" -gt 0 ]; do
  [ -e "$run/confirm" ] && { keep_keys; finish confirmed; }
  [ -e "$run/abort" ] && rollback "$(head -c 200 "$run/abort" | tr -c 'A-Za-z0-9_.:-' '-')"
  sleep 0.1
  n=$((n - 1))
done
rollback confirmation-timeout
