builtins.abort [ ]
