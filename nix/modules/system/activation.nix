# Activation: snippets run by the toplevel's `activate` script, and a switch
# to make activation fail on purpose (for testing rollbacks).
{ lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  options.system = {
    activationScripts = mkOption {
      type = types.attrsOf types.lines;
      default = { };
      example = {
        motd = "echo welcome > \"$root/etc/motd\"";
      };
      description = ''
        Shell snippets run, in attribute-name order, by the activate script.
        They see $systemConfig (the toplevel path) and $root
        (NDEPLOY_TARGET_ROOT, empty on a real target) and must prefix every
        path they touch with $root.
      '';
    };
    activationShouldFail = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Make activation (switch-to-configuration switch|test) exit non-zero
        after recording the activation, to test rollbacks.
      '';
    };
  };
}
