let fail = n: throw "argument ${n} forced"; in
builtins.filter true (fail "second")
