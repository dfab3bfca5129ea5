let fail = n: throw "argument ${n} forced"; in
builtins.addErrorContext (fail "first") (fail "second")
