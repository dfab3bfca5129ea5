# `users.users.<name>`: accounts, rendered to /etc/passwd-style lines in
# /etc/ndeploy/passwd and SSH keys in /etc/ssh/authorized_keys.d/<name>.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;

  userModule =
    { name, config, ... }:
    {
      options = {
        name = mkOption {
          type = types.str;
          default = name;
          description = "The user's login name; defaults to the attribute name.";
        };
        uid = mkOption {
          type = types.nullOr types.ints.unsigned;
          default = null;
          description = "The user id; null leaves it to be allocated on the target.";
        };
        isSystemUser = mkOption {
          type = types.bool;
          default = false;
          description = "Whether this is a system (service) account.";
        };
        isNormalUser = mkOption {
          type = types.bool;
          default = false;
          description = "Whether this is a person's account (home under /home, login shell).";
        };
        group = mkOption {
          type = types.str;
          default = if config.isNormalUser then "users" else config.name;
          description = "The primary group.";
        };
        extraGroups = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "Supplementary groups.";
        };
        description = mkOption {
          type = types.str;
          default = "";
          description = "The GECOS field.";
        };
        home = mkOption {
          type = types.path;
          default = if config.isNormalUser then "/home/${config.name}" else "/var/empty";
          description = "The home directory.";
        };
        shell = mkOption {
          type = types.path;
          default = if config.isNormalUser then "/bin/sh" else "/sbin/nologin";
          description = "The login shell.";
        };
        openssh.authorizedKeys.keys = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "SSH public keys allowed to log in as this user.";
        };
      };
    };

  users = lib.attrValues config.users.users;
in
{
  options.users.users = mkOption {
    type = types.attrsOf (types.submodule userModule);
    default = { };
    description = "User accounts.";
  };

  config = {
    users.users.root = {
      uid = lib.mkDefault 0;
      group = lib.mkDefault "root";
      home = lib.mkDefault "/root";
      shell = lib.mkDefault "/bin/sh";
    };

    environment.etc = {
      "ndeploy/passwd".text = lib.concatMapStrings (
        u:
        "${u.name}:x:${if u.uid == null then "" else toString u.uid}:${u.group}:${u.description}:${u.home}:${u.shell}\n"
      ) users;
      "ndeploy/group".text = lib.concatMapStrings (
        u: lib.concatMapStrings (g: "${g}:${u.name}\n") u.extraGroups
      ) users;
    }
    // lib.listToAttrs (
      map (u: {
        name = "ssh/authorized_keys.d/${u.name}";
        value.text = lib.concatMapStrings (k: k + "\n") u.openssh.authorizedKeys.keys;
      }) (lib.filter (u: u.openssh.authorizedKeys.keys != [ ]) users)
    );
  };
}
