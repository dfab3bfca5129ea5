#!/usr/bin/env bash
# Per-builtin micro-benchmarks against Nix 2.8: each workload calls one
# builtin (or set operation) N times under foldl' + seq on prepared 50-element
# data, and is run with `nix-instantiate --eval --strict` and with each given
# binary (`ndeploy` or the `evalfile` bench binary: `BIN instantiate --eval
# --strict FILE`). Prints task-clock ms (perf stat -r 5, mean) and the ratios.
# `base` is the loop alone (the identity function), `startup` the fixed cost.
# Usage: builtins.sh BIN [BIN2]
set -euo pipefail
bins=("$@")
[[ ${#bins[@]} -ge 1 ]] || { echo "usage: builtins.sh BIN [BIN2]" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
pre='let
  ks = builtins.genList (i: "k${toString i}") 50;
  s = builtins.listToAttrs (map (k: { name = k; value = k; }) ks);
  s2 = builtins.listToAttrs (map (k: { name = k + "x"; value = k; }) ks);
  small = { a = 1; b = 2; c = 3; };
  l = builtins.genList (i: i) 50;
  ls = builtins.genList (i: { a = i; b = i; }) 50;
  pairs = map (k: { name = k; value = 1; }) ks;
  f = { a, b ? 1, c ? 2 }: a;
  drop = [ "k1" "k20" "k40" ];
  run = n: g: builtins.foldl'"'"' (acc: i: builtins.seq (g i) acc) 0 (builtins.genList (i: i) n);
in '
w() { printf '%s\n%s\n' "$pre" "run $2 (i: $3)" > "$1.nix"; }
w base 200000 'i'
w update-small 100000 's // { x = i; }'
w update-same 20000 's // s2'
w update-tiny 200000 'small // { d = i; }'
w mapAttrs 20000 'builtins.mapAttrs (n: v: v) s'
w attrNames 20000 'builtins.attrNames s'
w attrValues 20000 'builtins.attrValues s'
w catAttrs 20000 'builtins.catAttrs "a" ls'
w filter 10000 'builtins.filter (x: x > 25) l'
w concatMap 10000 'builtins.concatMap (x: [ x ]) l'
w map 20000 'builtins.map (x: x) l'
w elem 20000 'builtins.elem 49 l'
w sort 2000 'builtins.sort (x: y: x > y) l'
w sort-lt 5000 'builtins.sort builtins.lessThan l'
w zipAttrsWith 5000 'builtins.zipAttrsWith (n: vs: vs) [ s s2 s ]'
w functionArgs 200000 'builtins.functionArgs f'
w isAttrs 200000 'builtins.isAttrs s'
w hasAttr 200000 'builtins.hasAttr "k25" s'
w getAttr 200000 'builtins.getAttr "k25" s'
w select 200000 's.k25'
w listToAttrs 10000 'builtins.listToAttrs pairs'
w removeAttrs 20000 'builtins.removeAttrs s drop'
w intersectAttrs 20000 'builtins.intersectAttrs s small'
w tryEval 200000 'builtins.tryEval i'
w addErrorContext 200000 'builtins.addErrorContext "ctx" i'
w interpolation 200000 '"x-${builtins.toString i}-y"'
w toString 200000 'builtins.toString i'
w concatStringsSep 20000 'builtins.concatStringsSep "," ks'
w substring 200000 'builtins.substring 1 3 "hello world"'
w stringLength 200000 'builtins.stringLength "hello"'
w match 100000 'builtins.match "k([0-9]+)" "k12"'
w length 200000 'builtins.length l'
w elemAt 200000 'builtins.elemAt l 25'
w head 200000 'builtins.head l'
w any 10000 'builtins.any (x: x > 100) l'
w concatLists 20000 'builtins.concatLists [ l l ]'
w genericClosure 200 'builtins.genericClosure { startSet = [ { key = 0; } ]; operator = x: if x.key < 500 then [ { key = x.key + 1; } ] else [ ]; }'
w foldl-update 20 'builtins.foldl'"'"' (acc: k: acc // { ${k} = 1; }) { } (builtins.genList (j: "n${toString j}") 1000)'
w attrset-literal 200000 '{ a = i; b = 2; c = 3; d = 4; e = 5; }'
w rec-literal 200000 'rec { a = i; b = a; c = 3; }'
w seq 200000 'builtins.seq i i'
w removeAttrs-lit 200000 'removeAttrs small [ "_file" "key" "a" "imports" "options" "config" "meta" "c" ]'
w dynamic-select 200000 's.${builtins.head ks}'
w dynamic-set 200000 '{ ${builtins.head ks} = i; }'
w startup 0 'i'
tc() { perf stat -r 5 -x, -e task-clock "$@" 2>&1 >/dev/null | awk -F, '/task-clock/ { printf "%.1f", $1 }'; }
printf '%-18s %7s %8s' bench calls nix-ms
for b in "${bins[@]}"; do printf ' %9s %6s' "$(basename "$b" | cut -c1-9)" ratio; done
echo
for f in $(ls ./*.nix | sed 's|^\./||; s/\.nix$//'); do
  n=$(grep -o '^run [0-9]*' "$f.nix" | awk '{ print $2 }')
  a=$(tc nix-instantiate --eval --strict "$f.nix")
  printf '%-18s %7s %8s' "$f" "$n" "$a"
  for b in "${bins[@]}"; do
    t=$(tc "$b" instantiate --eval --strict "$f.nix")
    printf ' %9s %6.2f' "$t" "$(awk -v a="$a" -v t="$t" 'BEGIN { print (a > 0 ? t / a : 0) }')"
  done
  echo
done
