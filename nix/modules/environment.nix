# System packages (linked under sw/ of the toplevel) and files under /etc
# (copied into etc/ of the toplevel).
{ lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  options.environment = {
    systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      example = "[ pkgs.hello ]";
      description = "Packages installed system-wide; their files are linked into the toplevel's sw/.";
    };

    etc = mkOption {
      default = { };
      example = {
        "motd".text = "Welcome!";
      };
      description = "Files in /etc, by path relative to /etc.";
      type = types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              enable = mkOption {
                type = types.bool;
                default = true;
                description = "Whether this file is installed.";
              };
              target = mkOption {
                type = types.strMatching "[^/].*";
                default = name;
                description = "Path relative to /etc; defaults to the attribute name.";
              };
              text = mkOption {
                type = types.lines;
                description = "The file's contents.";
              };
              mode = mkOption {
                type = types.strMatching "0?[0-7]{3}";
                default = "0444";
                description = "The file's permission bits.";
              };
            };
          }
        )
      );
    };
  };
}
