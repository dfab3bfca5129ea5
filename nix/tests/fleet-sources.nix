# How ../fleet.nix discovers hosts in each kind of source, on hand-made flake
# outputs (no flake needed). tests/e2e/nixlib.rs evaluates this file with
# `nix-instantiate --eval --strict --json` and compares with expected values.
let
  fleet = import ../fleet.nix;
  ndeploy = import ../.;
  system = "x86_64-linux";

  host =
    name: extra:
    ndeploy.nixosSystem {
      inherit system;
      modules = [
        { networking.hostName = name; }
        extra
      ];
    };

  # A configuration from another module system: has a toplevel, no `deployment`.
  foreign = {
    config.system.build.toplevel = derivation {
      name = "foreign-system";
      inherit system;
      builder = "/bin/sh";
      args = [
        "-c"
        "echo > $out"
      ];
    };
  };

  flake = {
    nixosConfigurations = {
      a = host "a" { deployment.tags = [ "x" ]; };
      # No hostName, no targetHost: the target is the attribute name.
      unnamed = ndeploy.nixosSystem {
        inherit system;
        modules = [ ];
      };
      plain = foreign;
      # Not a system: ignored.
      notASystem = {
        config = { };
      };
    };
    # deploy-rs: `plain` gets its settings from here, `b` only exists here.
    deploy.nodes = {
      plain = {
        hostname = "plain.example";
        sshUser = "deployer";
        sshOpts = [ "-p" "2200" ];
        profiles.system.path = foreign.config.system.build.toplevel;
      };
      b = {
        hostname = "b.example";
        remoteBuild = true;
        profiles.system.path = (host "b" { }).config.system.build.toplevel;
      };
    };
    colmena = {
      meta.system = system;
      defaults =
        { name, ... }:
        {
          deployment.tags = [ "hive" ];
          environment.etc."who".text = name;
        };
      c = {
        deployment.targetPort = 2022;
      };
    };
  };

  summary = hosts: builtins.mapAttrs (_: h: h.deployment) hosts;
in
{
  names = builtins.attrNames (fleet.hosts flake);
  deployments = summary (fleet.hosts flake);
  # deploy.nodes.b's toplevel is the configuration's own.
  deployRsToplevel =
    (fleet.hosts flake).b.drvPath == (host "b" { }).config.system.build.toplevel.drvPath;
  # The hive's `name` argument reached the module; hostName defaulted to it.
  hiveHostName = (fleet.configurations flake).c.config.networking.hostName;
  hiveEtc = (fleet.configurations flake).c.config.environment.etc.who.text;
  select = fleet.select [ "@hive" "plain" ] flake;
  # A host whose configuration does not evaluate is listed, and selecting
  # other hosts by name does not evaluate it.
  lazyListing =
    let
      withBroken = flake // {
        nixosConfigurations = flake.nixosConfigurations // {
          broken = host "broken" { no.such.option = 1; };
        };
      };
    in
    {
      names = builtins.attrNames (fleet.hosts withBroken);
      select = fleet.select [ "a" "b" ] withBroken;
    };
}
