builtins.parseDrvName { outPath = "a-1"; }
