builtins.toXML { a = 1; b = [ true "s" ]; c = x: x; }
