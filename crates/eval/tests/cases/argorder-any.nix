let fail = n: throw "argument ${n} forced"; in
builtins.any true (fail "second")
