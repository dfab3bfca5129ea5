let fail = n: throw "argument ${n} forced"; in
builtins.sort { } (fail "second")
