let fail = n: throw "argument ${n} forced"; in
builtins.match "(" (fail "second")
