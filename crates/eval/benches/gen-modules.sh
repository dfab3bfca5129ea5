#!/usr/bin/env bash
# Generate a lib.evalModules workload: N options of assorted types spread over
# modules, with defaults, mkDefault/mkForce/mkIf/mkMerge definitions and a
# submodule. Usage: gen-modules.sh NIXPKGS_LIB_DIR N > file.nix
set -euo pipefail
lib=$1
n=${2:-300}
echo "let lib = import $lib/lib; inherit (lib) mkOption types mkDefault mkForce mkIf mkMerge; in"
echo "(lib.evalModules { modules = ["
echo "  { options.sub = mkOption { type = types.attrsOf (types.submodule ({ name, ... }: { options.port = mkOption { type = types.port; default = 80; }; options.label = mkOption { type = types.str; default = name; }; })); default = { }; }; }"
for ((i = 0; i < n; i++)); do
  case $((i % 5)) in
    0) echo "  { options.o$i = mkOption { type = types.str; default = \"d$i\"; }; }"
       echo "  { config.o$i = mkDefault \"v$i\"; }" ;;
    1) echo "  { options.o$i = mkOption { type = types.int; default = $i; }; }"
       echo "  ({ config, ... }: { config.o$i = mkIf (config.o$((i - 1)) != \"\") (mkForce $((i * 2))); })" ;;
    2) echo "  { options.o$i = mkOption { type = types.listOf types.str; default = [ ]; }; }"
       echo "  { config.o$i = [ \"a$i\" ]; }"
       echo "  { config.o$i = mkMerge [ [ \"b$i\" ] (mkIf true [ \"c$i\" ]) ]; }" ;;
    3) echo "  { options.o$i = mkOption { type = types.attrsOf types.int; default = { }; }; }"
       echo "  { config.o$i = { x = $i; }; }"
       echo "  { config.o$i.y = $((i + 1)); config.sub.s$i.port = $((1000 + i)); }" ;;
    4) echo "  { options.o$i = mkOption { type = types.bool; default = false; }; }"
       echo "  ({ lib, ... }: { config.o$i = lib.mkOverride 90 true; })" ;;
  esac
done
echo "]; }).config"
