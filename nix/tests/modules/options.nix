# Option declarations shared by the test cases in ../semantics.nix and ../errors.nix.
{ lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  options = {
    name = mkOption {
      type = types.str;
      default = "default";
    };
    count = mkOption {
      type = types.int;
    };
    enable = mkOption {
      type = types.bool;
      default = false;
    };
    list = mkOption {
      type = types.listOf types.str;
      default = [ "from-default" ];
    };
    text = mkOption {
      type = types.lines;
      default = "";
    };
    port = mkOption {
      type = types.port;
      default = 80;
    };
    mode = mkOption {
      type = types.enum [
        "fast"
        "safe"
      ];
      default = "safe";
    };
    maybe = mkOption {
      type = types.nullOr types.str;
      default = null;
    };
    either = mkOption {
      type = types.either types.int types.str;
      default = 0;
    };
    anything = mkOption {
      type = types.anything;
      default = { };
    };
    raw = mkOption {
      type = types.raw;
      default = null;
    };
    upper = mkOption {
      type = types.str;
      default = "x";
      apply = lib.replaceStrings [ "a" "b" "x" ] [ "A" "B" "X" ];
    };
    fixed = mkOption {
      type = types.str;
      default = "fixed";
      readOnly = true;
    };
    file = mkOption {
      type = types.path;
      default = "/etc/default";
    };
    package = mkOption {
      type = types.nullOr types.package;
      default = null;
    };
    nested.deep.value = mkOption {
      type = types.int;
      default = 1;
    };
    items = mkOption {
      type = types.attrsOf types.int;
      default = { };
    };
    users = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, config, ... }:
          {
            options = {
              name = mkOption {
                type = types.str;
                default = name;
              };
              uid = mkOption {
                type = types.nullOr types.int;
                default = null;
              };
              home = mkOption {
                type = types.str;
                default = "/home/${config.name}";
              };
              groups = mkOption {
                type = types.listOf types.str;
                default = [ ];
              };
            };
          }
        )
      );
    };
    checks = mkOption {
      default = [ ];
      type = types.listOf (
        types.submodule {
          options.cmd = mkOption { type = types.str; };
          options.retries = mkOption {
            type = types.int;
            default = 3;
          };
        }
      );
    };
  };
}
