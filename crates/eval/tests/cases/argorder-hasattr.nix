let fail = n: throw "argument ${n} forced"; in
builtins.hasAttr 1 (fail "second")
