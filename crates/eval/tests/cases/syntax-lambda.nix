let f = { a, b ? a * 10, ... }@args: [ a b (builtins.attrNames args) ]; g = x: y: x - y; in [ (f { a = 1; }) (f { a = 1; b = 2; c = 3; }) (g 10 3) ]
