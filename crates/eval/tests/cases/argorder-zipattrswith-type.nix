builtins.zipAttrsWith true [ { x = 1; } ]
