builtins.substring (-1) 1 { }
