# `systemd.services.<name>`: rendered into unit files under
# /etc/systemd/system and start scripts under /etc/ndeploy/services/.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;

  unitValue =
    v:
    if builtins.isBool v then
      (if v then "true" else "false")
    else if builtins.isList v then
      lib.concatMapStringsSep " " unitValue v
    else
      toString v;

  serviceModule =
    { name, config, ... }:
    {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Whether the unit is installed.";
        };
        description = mkOption {
          type = types.str;
          default = name;
          description = "The unit's Description=.";
        };
        wantedBy = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [ "multi-user.target" ];
          description = "Units that want this one (WantedBy=).";
        };
        after = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "Units this one starts after (After=).";
        };
        requires = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "Units this one requires (Requires=).";
        };
        environment = mkOption {
          type = types.attrsOf types.str;
          default = { };
          description = "Environment variables of the service.";
        };
        path = mkOption {
          type = types.listOf types.package;
          default = [ ];
          description = "Packages whose bin/ is on the service's PATH.";
        };
        script = mkOption {
          type = types.lines;
          default = "";
          description = "Shell commands run as the service's main process.";
        };
        serviceConfig = mkOption {
          type = types.attrsOf (
            types.oneOf [
              types.str
              types.int
              types.bool
              (types.listOf types.str)
            ]
          );
          default = { };
          example = {
            User = "nginx";
            Restart = "always";
          };
          description = "[Service] section settings.";
        };
      };
    };

  enabled = lib.filterAttrs (_: s: s.enable) config.systemd.services;

  unitFile =
    name: s:
    let
      hasScript = s.script != "";
      env = s.environment // lib.optionalAttrs (s.path != [ ]) { PATH = lib.makeBinPath s.path; };
      serviceSettings =
        lib.optionalAttrs hasScript { ExecStart = "/bin/sh /etc/ndeploy/services/${name}/start"; }
        // s.serviceConfig;
    in
    ''
      [Unit]
      Description=${s.description}
    ''
    + lib.optionalString (s.after != [ ]) "After=${toString s.after}\n"
    + lib.optionalString (s.requires != [ ]) "Requires=${toString s.requires}\n"
    + "\n[Service]\n"
    + lib.concatStrings (lib.mapAttrsToList (k: v: "Environment=${builtins.toJSON "${k}=${v}"}\n") env)
    + lib.concatStrings (lib.mapAttrsToList (k: v: "${k}=${unitValue v}\n") serviceSettings)
    + lib.optionalString (s.wantedBy != [ ]) "\n[Install]\nWantedBy=${toString s.wantedBy}\n";
in
{
  options.systemd.services = mkOption {
    type = types.attrsOf (types.submodule serviceModule);
    default = { };
    description = "System services.";
  };

  config.environment.etc = lib.concatMapAttrs (
    name: s:
    {
      "systemd/system/${name}.service".text = unitFile name s;
    }
    // lib.optionalAttrs (s.script != "") {
      "ndeploy/services/${name}/start" = {
        text = "set -e\n" + s.script;
        mode = "0555";
      };
    }
  ) enabled;
}
