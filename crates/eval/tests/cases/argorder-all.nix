let fail = n: throw "argument ${n} forced"; in
builtins.all 1 (fail "second")
