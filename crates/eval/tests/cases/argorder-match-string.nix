builtins.match "a" { __toString = s: "a"; }
