# `services.node-exporter`: a metrics exporter, as a systemd service.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.services.node-exporter;
in
{
  options.services.node-exporter = {
    enable = lib.mkEnableOption "the Prometheus node exporter";
    package = lib.mkPackageOption pkgs "exporter" "prometheus-node-exporter";
    port = mkOption {
      type = types.port;
      default = 9100;
      description = "Port metrics are served on.";
    };
    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Whether to open the port in the firewall.";
    };
  };

  config = lib.mkIf cfg.enable {
    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.port ];
    systemd.services.node-exporter = {
      description = "Prometheus node exporter";
      wantedBy = [ "multi-user.target" ];
      path = [ cfg.package ];
      script = "exec node_exporter --web.listen-address=:${toString cfg.port}";
      serviceConfig = {
        DynamicUser = true;
        Restart = "always";
      };
    };
  };
}
