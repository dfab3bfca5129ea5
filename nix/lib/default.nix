# ndeploy's module library: a small, self-contained replacement for the parts
# of nixpkgs' `lib` that NixOS-style configurations need.
#
# Design: every file is a function `lib: { ... }` receiving the final library
# (a lazy fixed point), so files may use each other's helpers freely. Only
# builtins present in Nix 2.8 are used, so the same code evaluates with C++ Nix
# and with ndeploy's own evaluator. Importing this file is cheap and its value
# is shared (Nix caches `import` per file), so a fleet of many hosts builds
# one library.
let
  lib =
    import ./trivial.nix lib
    // import ./lists.nix lib
    // import ./attrsets.nix lib
    // import ./strings.nix lib
    // import ./options.nix lib
    // import ./modules.nix lib
    // {
      types = import ./types.nix lib;
    };
in
lib
