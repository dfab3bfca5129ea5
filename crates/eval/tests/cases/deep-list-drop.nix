let l = builtins.foldl' (acc: x: [ acc ]) [ ] (builtins.genList (x: x) 1000000); in builtins.length l
