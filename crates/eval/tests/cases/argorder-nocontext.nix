builtins.hasAttr "${builtins.toFile "argorder" "x"}" { }
