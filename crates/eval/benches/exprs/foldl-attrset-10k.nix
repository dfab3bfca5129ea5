builtins.attrNames (builtins.foldl' (acc: i: acc // { "k${toString i}" = i; }) { } (builtins.genList (x: x) 10000)) == [ ]
