# A generated fleet for evaluation benchmarks: `hosts` hosts, each evaluated
# with `modules` generated modules on top of ndeploy's own. Every generated
# module declares an option set (enable flag, a port, a list) and, when
# enabled, defines /etc files, a systemd service, firewall ports and packages;
# about a third use mkIf on another module's option, mkDefault or mkMerge,
# like real configurations. The result is a plain fleet (hive) for
# ../fleet.nix:
#   nix-instantiate --eval --strict --json -E \
#     'builtins.mapAttrs (_: h: h.drvPath) ((import nix/fleet.nix).hosts
#        (import nix/tests/synthetic-fleet.nix { hosts = 100; modules = 200; }))'
{
  hosts ? 10,
  modules ? 200,
  system ? "x86_64-linux",
}:
let
  lib = import ../lib;
  inherit (lib) mkOption types;

  # Module i, shared by all hosts (so Nix evaluates its source once).
  module =
    i:
    let
      n = "m${toString i}";
      prev = "m${toString (if i == 0 then 0 else i - 1)}";
    in
    { config, pkgs, ... }:
    let
      cfg = config.bench.${n};
    in
    {
      options.bench.${n} = {
        enable = mkOption {
          type = types.bool;
          default = false;
        };
        port = mkOption {
          type = types.port;
          default = 10000 + i;
        };
        names = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
      };
      config = lib.mkMerge [
        (lib.mkIf cfg.enable {
          environment.etc."bench/${n}.conf".text = ''
            port = ${toString cfg.port}
            names = ${lib.concatStringsSep "," cfg.names}
          '';
          networking.firewall.allowedTCPPorts = [ cfg.port ];
          systemd.services."bench-${n}" = {
            wantedBy = [ "multi-user.target" ];
            script = "echo ${n} on ${config.networking.hostName}";
            serviceConfig.Restart = "always";
          };
          bench.${n}.names = [ config.networking.hostName ];
        })
        (lib.mkIf (lib.mod i 3 == 0 && config.bench.${prev}.enable) {
          environment.systemPackages = [ pkgs.hello ];
          users.users."svc-${n}" = {
            isSystemUser = true;
            uid = lib.mkDefault (2000 + i);
          };
        })
        { bench.${n}.enable = lib.mkDefault (lib.mod i 2 == 0); }
      ];
    };

  modulesList = builtins.genList module modules;

  host = h: {
    imports = modulesList;
    networking.hostName = "host-${toString h}";
    deployment.tags = [ (if lib.mod h 2 == 0 then "even" else "odd") ];
    bench.m1.enable = lib.mod h 5 == 0;
  };
in
{
  meta.system = system;
}
// builtins.listToAttrs (
  builtins.genList (h: {
    name = "host-${toString h}";
    value = host h;
  }) hosts
)
