builtins.foldl' (acc: i: acc // { ${toString i} = i; }) { } (builtins.genList (x: x) 10000) ? "9999"
