let fail = n: throw "argument ${n} forced"; in
builtins.toFile true (fail "second")
