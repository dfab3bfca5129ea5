# The Nix side of ndeploy. A flake (or any Nix file) uses it with
#   let ndeploy = import <path to this directory>; in
#   ndeploy.nixosSystem { system = "x86_64-linux"; modules = [ ./host.nix ]; }
# Everything here is plain Nix (no nixpkgs) and evaluates with Nix >= 2.8.
{
  # The module library: evalModules, mkOption, types, mkIf, ...
  lib = import ./lib;

  # Evaluate one system (see ./system.nix); `evalConfig` is the same function.
  nixosSystem = args: import ./system.nix args;
  evalConfig = args: import ./system.nix args;

  # Fleet helpers used by ndeploy's evaluator (see ./fleet.nix).
  fleet = import ./fleet.nix;

  # ndeploy's package set for a system.
  pkgsFor =
    system: (import ./pkgs/by-system.nix).${system} or (import ./pkgs { inherit system; });

  # The module list every system includes, and the directory holding it.
  modules = import ./modules/module-list.nix;
  modulesPath = ./modules;
}
