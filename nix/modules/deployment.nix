# `deployment.*`: how ndeploy reaches and deploys this host (colmena
# compatible names). Read by ../fleet.nix, which exports them as plain data;
# secrets in `keys` never enter the store (keyFile is kept as a path string,
# not copied).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.deployment;

  keyModule =
    { name, config, ... }:
    {
      options = {
        name = mkOption {
          type = types.strMatching "[^/]+";
          default = name;
          description = "File name of the key in destDir (no slashes).";
        };
        text = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "The key's contents. Exactly one of text and keyFile must be set.";
        };
        keyFile = mkOption {
          type = types.nullOr types.path;
          default = null;
          apply = v: if v == null then null else toString v;
          description = "A file on the deploying machine holding the key (never copied to the store).";
        };
        destDir = mkOption {
          type = types.path;
          default = "/run/keys";
          description = "Directory on the target the key is written to.";
        };
        path = mkOption {
          type = types.str;
          readOnly = true;
          default = "${config.destDir}/${config.name}";
          description = "Full path of the key on the target (read-only).";
        };
        user = mkOption {
          type = types.str;
          default = "root";
          description = "Owner of the key file.";
        };
        group = mkOption {
          type = types.str;
          default = "root";
          description = "Group of the key file.";
        };
        permissions = mkOption {
          type = types.strMatching "0?[0-7]{3}";
          default = "0600";
          description = "Permission bits of the key file.";
        };
        uploadAt = mkOption {
          type = types.enum [
            "pre-activation"
            "post-activation"
          ];
          default = "pre-activation";
          description = "Whether the key is uploaded before or after activating the new system.";
        };
      };
    };

  healthCheckModule = {
    options = {
      cmd = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "systemctl is-active nginx";
        description = "A shell command run on the target; healthy when it exits 0. Exactly one of cmd and http must be set.";
      };
      http = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "http://web-1:80/";
        description = "A URL fetched from the deploying machine; healthy on a 2xx response.";
      };
      timeout = mkOption {
        type = types.ints.positive;
        default = 10;
        description = "Seconds one attempt may take.";
      };
      retries = mkOption {
        type = types.ints.unsigned;
        default = 3;
        description = "Attempts after the first failure before the check fails.";
      };
    };
  };
in
{
  options.deployment = {
    targetHost = mkOption {
      type = types.nullOr types.str;
      default = config.networking.fqdn;
      defaultText = "config.networking.fqdn";
      description = "Address ndeploy connects to (SSH). null means the host is not deployable.";
    };
    targetPort = mkOption {
      type = types.nullOr types.port;
      default = null;
      description = "SSH port; null uses the SSH default (or ssh_config).";
    };
    targetUser = mkOption {
      type = types.nullOr types.str;
      default = "root";
      description = "SSH user; null uses the SSH default.";
    };
    tags = mkOption {
      type = types.listOf (types.strMatching "[A-Za-z0-9_.-]+");
      default = [ ];
      example = [ "web" ];
      description = "Tags for selecting hosts with `--on @tag`.";
    };
    buildOnTarget = mkOption {
      type = types.bool;
      default = false;
      description = "Build the system on the target instead of locally and copying it.";
    };
    sshOptions = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "-o" "StrictHostKeyChecking=no" ];
      description = "Extra arguments for ssh.";
    };
    keys = mkOption {
      type = types.attrsOf (types.submodule keyModule);
      default = { };
      description = "Secrets uploaded to the target outside the store.";
    };
    healthChecks = mkOption {
      type = types.listOf (types.submodule healthCheckModule);
      default = [ ];
      description = "Checks run after activation; a failing check triggers a rollback.";
    };
  };

  config.assertions =
    lib.mapAttrsToList (n: k: {
      assertion = (k.text == null) != (k.keyFile == null);
      message = "deployment.keys.${n}: exactly one of text and keyFile must be set.";
    }) cfg.keys
    ++ lib.imap1 (i: h: {
      assertion = (h.cmd == null) != (h.http == null);
      message = "deployment.healthChecks entry ${toString i}: exactly one of cmd and http must be set.";
    }) cfg.healthChecks;
}
