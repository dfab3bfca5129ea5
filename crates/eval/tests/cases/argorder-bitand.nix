let fail = n: throw "argument ${n} forced"; in
builtins.bitAnd true (fail "second")
