# The package set for each supported system, computed once per evaluation:
# Nix caches the value of an imported file, so every host of a fleet that
# imports this file shares the same package derivations.
builtins.listToAttrs (
  map
    (system: {
      name = system;
      value = import ./default.nix { inherit system; };
    })
    [
      "x86_64-linux"
      "aarch64-linux"
      "i686-linux"
      "aarch64-darwin"
      "x86_64-darwin"
    ]
)
