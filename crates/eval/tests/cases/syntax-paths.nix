let p = ./a/../b; in [ (builtins.baseNameOf p) (builtins.typeOf p) (builtins.typeOf (p + "/c")) ]
