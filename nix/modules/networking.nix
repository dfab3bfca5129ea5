# Host name and firewall ports; written to /etc/hostname and
# /etc/ndeploy/firewall (one allowed TCP port per line).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  options.networking = {
    hostName = mkOption {
      type = types.strMatching "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
      default = "nixos";
      description = "The host's name (a DNS label). Also the default deployment.targetHost.";
    };
    domain = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "example.internal";
      description = "The host's domain; the FQDN is hostName.domain.";
    };
    fqdn = mkOption {
      type = types.str;
      readOnly = true;
      default =
        if config.networking.domain == null then
          config.networking.hostName
        else
          "${config.networking.hostName}.${config.networking.domain}";
      description = "The fully qualified domain name (read-only).";
    };
    firewall.allowedTCPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
      description = "TCP ports open to the network.";
    };
  };

  config.environment.etc = {
    hostname.text = config.networking.hostName + "\n";
    "ndeploy/firewall".text = lib.concatMapStrings (p: "${toString p}\n") (
      lib.sort (a: b: a < b) (lib.unique config.networking.firewall.allowedTCPPorts)
    );
  };
}
