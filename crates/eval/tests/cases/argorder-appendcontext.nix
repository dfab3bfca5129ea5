let fail = n: throw "argument ${n} forced"; in
builtins.appendContext 1 (fail "second")
