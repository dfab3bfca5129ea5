# Evaluate one system, like NixOS's eval-config.nix:
#
#   import ./system.nix { modules = [ ./host.nix ]; system = "x86_64-linux"; }
#     => { config; options; extendModules; _type = "configuration"; pkgs; }
#
# `system` sets nixpkgs.system at mkDefault priority (a module may override
# it); without it nixpkgs.system defaults to builtins.currentSystem, which
# pure (flake) evaluation lacks. `pkgs` replaces the package set given to
# modules; `specialArgs` are extra module arguments available while imports
# are resolved. `baseModules` are ndeploy's modules (./modules).
{
  modules ? [ ],
  system ? null,
  pkgs ? null,
  specialArgs ? { },
  baseModules ? import ./modules/module-list.nix,
}:
let
  lib = import ./lib;
  result = lib.evalModules {
    modules =
      baseModules
      ++ lib.optional (system != null) {
        _file = toString ./system.nix;
        nixpkgs.system = lib.mkDefault system;
      }
      ++ lib.optional (pkgs != null) {
        _file = toString ./system.nix;
        _module.args.pkgs = pkgs;
      }
      ++ modules;
    specialArgs = {
      modulesPath = ./modules;
    }
    // specialArgs;
  };
in
result
// {
  pkgs = result.config._module.args.pkgs;
}
