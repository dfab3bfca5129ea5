# `nixpkgs.system` and the `pkgs` module argument: ndeploy's own package set
# (../../pkgs) for that system, shared between all hosts of one system.
{ config, lib, ... }:
{
  options.nixpkgs.system = lib.mkOption {
    type = lib.types.str;
    default =
      builtins.currentSystem
        or (throw "nixpkgs.system is not set and builtins.currentSystem is unavailable (pure evaluation, e.g. a flake): pass `system` to nixosSystem or set nixpkgs.system.");
    example = "x86_64-linux";
    description = "The platform the system runs on and its packages are built for.";
  };

  config._module.args.pkgs = lib.mkOptionDefault (
    (import ../../pkgs/by-system.nix).${config.nixpkgs.system}
      or (import ../../pkgs { inherit (config.nixpkgs) system; })
  );
}
