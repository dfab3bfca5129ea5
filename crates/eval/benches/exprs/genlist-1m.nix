builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x * 2) 1000000)
