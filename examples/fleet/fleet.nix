# The example fleet in plain (colmena hive) form: the same hosts as flake.nix.
# Evaluate with (import ../../nix/fleet.nix).hosts (import ./fleet.nix).
{
  meta.system = "x86_64-linux";
  defaults = ./modules/common.nix;

  web-1 = ./hosts/web-1.nix;
  web-2 = ./hosts/web-2.nix;
  db-1 = ./hosts/db-1.nix;
  monitor-1 = ./hosts/monitor-1.nix;
}
