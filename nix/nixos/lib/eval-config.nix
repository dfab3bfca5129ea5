# NixOS's entry point, for ndeploy's own library: what
# `import (pkgs.path + "/nixos/lib/eval-config.nix") { ... }` finds when
# `pkgs` is ndeploy's package set (whose `path` is this library's directory).
# colmena evaluates every hive node this way (with its `meta.nixpkgs` as
# `pkgs`), and so does ndeploy's fleet.nix, so a hive written for colmena
# with `meta.nixpkgs = <ndeploy's pkgs>` evaluates the same under both.
#
# Takes NixOS's arguments; those with no meaning here (`prefix`, `check`,
# `modulesLocation`, `lib`, `extraArgs`) are accepted and ignored.
{
  system ? null,
  pkgs ? null,
  modules ? [ ],
  extraModules ? [ ],
  specialArgs ? { },
  baseModules ? import ../../modules/module-list.nix,
  ...
}:
import ../../system.nix {
  inherit
    system
    pkgs
    specialArgs
    baseModules
    ;
  modules = modules ++ extraModules;
}
