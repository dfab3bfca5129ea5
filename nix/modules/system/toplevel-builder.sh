# Builds system.build.toplevel (see toplevel.nix for the attributes it reads).
# Runs under /bin/sh -eu with the host's coreutils (sandbox off).
PATH=/usr/bin:/bin
mkdir -p "$out/etc" "$out/sw" "$out/bin"

for a in $etcAttrs; do
    eval "src=\$${a}Path target=\$${a}Target mode=\$${a}Mode"
    case "$target" in
        /* | ../* | */../* | .. | */..) echo "refusing etc target outside etc/: $target" >&2; exit 1 ;;
    esac
    mkdir -p "$(dirname "$out/etc/$target")"
    cp "$src" "$out/etc/$target"
    chmod "$mode" "$out/etc/$target"
done

for p in $systemPackages; do
    if [ -d "$p" ]; then
        (cd "$p" && find . ! -type d) | while IFS= read -r f; do
            f=${f#./}
            mkdir -p "$(dirname "$out/sw/$f")"
            ln -sfn "$p/$f" "$out/sw/$f"
        done
    else
        mkdir -p "$out/sw/bin"
        ln -sfn "$p" "$out/sw/bin/$(basename "$p" | cut -d- -f2-)"
    fi
done

printf '%s\n' "$hostName" > "$out/hostname"
printf '%s\n' "$targetSystem" > "$out/system"

sed -e "s|@out@|$out|g" -e "s|@shouldFail@|${activationShouldFail:-}|g" "$activateTemplate" > "$out/activate"
cat "$activationScriptsPath" >> "$out/activate"
cat >> "$out/activate" <<'TAIL'

if [ -n "$shouldFail" ]; then
    echo "activation of $systemConfig failed: system.activationShouldFail is set" >&2
    exit 1
fi
mkdir -p "$root/run"
ln -sfn "$systemConfig" "$root/run/current-system"
TAIL
chmod 0555 "$out/activate"

sed -e "s|@out@|$out|g" "$switchTemplate" > "$out/bin/switch-to-configuration"
chmod 0555 "$out/bin/switch-to-configuration"
