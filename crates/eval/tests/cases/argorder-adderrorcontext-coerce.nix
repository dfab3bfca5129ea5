let fail = n: throw "argument ${n} forced"; in
builtins.addErrorContext true (fail "second")
