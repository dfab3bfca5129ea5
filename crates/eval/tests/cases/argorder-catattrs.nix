let fail = n: throw "argument ${n} forced"; in
builtins.catAttrs 1 (fail "second")
