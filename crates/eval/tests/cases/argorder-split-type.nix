let fail = n: throw "argument ${n} forced"; in
builtins.split true (fail "second")
