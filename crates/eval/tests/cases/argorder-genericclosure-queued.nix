let fail = n: throw "argument ${n} forced"; in
builtins.genericClosure { startSet = [ { key = 1; } { key = fail "later"; } ]; operator = x: [ (fail "queued") ]; }
