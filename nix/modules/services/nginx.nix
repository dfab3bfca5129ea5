# `services.nginx`: a web server with virtual hosts, rendered to
# /etc/nginx/nginx.conf, run as a systemd service, port opened in the firewall.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.services.nginx;

  vhostModule =
    { name, ... }:
    {
      options = {
        serverName = mkOption {
          type = types.str;
          default = name;
          description = "The primary server name; defaults to the attribute name.";
        };
        serverAliases = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "Additional server names.";
        };
        root = mkOption {
          type = types.nullOr types.path;
          default = null;
          description = "Directory served as the document root (a Nix path is copied to the store).";
        };
        locations = mkOption {
          type = types.attrsOf types.lines;
          default = { };
          example = {
            "/api" = "proxy_pass http://127.0.0.1:8080;";
          };
          description = "Location blocks: path -> directives.";
        };
        extraConfig = mkOption {
          type = types.lines;
          default = "";
          description = "Directives added to the server block.";
        };
      };
    };

  indent = s: lib.concatMapStrings (l: if l == "" then "" else "    ${l}\n") (lib.splitString "\n" s);

  serverBlock =
    v:
    ''
      server {
        listen ${toString cfg.port};
        server_name ${lib.concatStringsSep " " ([ v.serverName ] ++ v.serverAliases)};
    ''
    + lib.optionalString (v.root != null) "  root ${v.root};\n"
    + lib.concatStrings (
      lib.mapAttrsToList (path: body: "  location ${path} {\n${indent body}  }\n") v.locations
    )
    + lib.optionalString (v.extraConfig != "") (indent v.extraConfig)
    + "}\n";
in
{
  options.services.nginx = {
    enable = lib.mkEnableOption "the nginx web server";
    package = lib.mkPackageOption pkgs "nginx" "nginx";
    port = mkOption {
      type = types.port;
      default = 80;
      description = "Port every virtual host listens on.";
    };
    workerProcesses = mkOption {
      type = types.either types.ints.positive (types.enum [ "auto" ]);
      default = "auto";
      description = "Number of worker processes.";
    };
    virtualHosts = mkOption {
      type = types.attrsOf (types.submodule vhostModule);
      default = { };
      description = "Virtual hosts, by name.";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];
    environment.etc."nginx/nginx.conf".text = ''
      worker_processes ${toString cfg.workerProcesses};
      events {}
      http {
    ''
    + indent (lib.concatStrings (map serverBlock (lib.attrValues cfg.virtualHosts)))
    + "}\n";
    networking.firewall.allowedTCPPorts = [ cfg.port ];
    users.users.nginx = {
      isSystemUser = true;
      group = "nginx";
    };
    systemd.services.nginx = {
      description = "nginx web server";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      path = [ cfg.package ];
      script = "exec nginx -c /etc/nginx/nginx.conf";
      serviceConfig = {
        User = "nginx";
        Restart = "always";
      };
    };
  };
}
