let x = throw "never"; in { a = 1; b = builtins.length [ x x ]; }
