let fail = n: throw "argument ${n} forced"; in
builtins.removeAttrs true (fail "second")
