# `services.postgresql`: a database server; settings rendered to
# /etc/postgresql/postgresql.conf, client authentication to pg_hba.conf.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.services.postgresql;

  settingValue =
    v:
    if builtins.isBool v then
      (if v then "on" else "off")
    else if builtins.isInt v then
      toString v
    else
      "'${lib.replaceStrings [ "'" ] [ "''" ] v}'";
in
{
  options.services.postgresql = {
    enable = lib.mkEnableOption "the PostgreSQL database server";
    package = lib.mkPackageOption pkgs "PostgreSQL" "postgresql";
    port = mkOption {
      type = types.port;
      default = 5432;
      description = "Port the server listens on.";
    };
    dataDir = mkOption {
      type = types.path;
      default = "/var/lib/postgresql/15";
      description = "The data directory.";
    };
    ensureDatabases = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Databases created at startup if missing.";
    };
    authentication = mkOption {
      type = types.lines;
      default = "";
      description = "pg_hba.conf lines, before the default local rules.";
    };
    settings = mkOption {
      type = types.attrsOf (
        types.oneOf [
          types.str
          types.int
          types.bool
        ]
      );
      default = { };
      example = {
        max_connections = 200;
      };
      description = "postgresql.conf settings.";
    };
  };

  config = lib.mkIf cfg.enable {
    services.postgresql.settings = {
      port = lib.mkDefault cfg.port;
      listen_addresses = lib.mkDefault "localhost";
      hba_file = "/etc/postgresql/pg_hba.conf";
    };
    environment.systemPackages = [ cfg.package ];
    environment.etc."postgresql/postgresql.conf".text = lib.concatStrings (
      lib.mapAttrsToList (k: v: "${k} = ${settingValue v}\n") cfg.settings
    );
    environment.etc."postgresql/pg_hba.conf".text = lib.mkMerge [
      cfg.authentication
      (lib.mkAfter ''
        local all all peer
        host all all 127.0.0.1/32 scram-sha-256
      '')
    ];
    networking.firewall.allowedTCPPorts = lib.mkIf (cfg.settings.listen_addresses != "localhost") [
      cfg.port
    ];
    users.users.postgres = {
      isSystemUser = true;
      group = "postgres";
      home = cfg.dataDir;
    };
    systemd.services.postgresql = {
      description = "PostgreSQL server";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      path = [ cfg.package ];
      environment.PGDATA = cfg.dataDir;
      script = ''
        postgres -D ${cfg.dataDir}
      ''
      + lib.concatMapStrings (db: "psql -c ${lib.escapeShellArg "CREATE DATABASE \"${db}\""}\n") cfg.ensureDatabases;
      serviceConfig.User = "postgres";
    };
  };
}
