let fail = n: throw "argument ${n} forced"; in
builtins.intersectAttrs [ ] (fail "second")
