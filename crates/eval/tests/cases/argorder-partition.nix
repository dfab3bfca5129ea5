let fail = n: throw "argument ${n} forced"; in
builtins.partition true (fail "second")
