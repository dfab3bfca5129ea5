let fail = n: throw "argument ${n} forced"; in
builtins.zipAttrsWith (fail "first") (fail "second")
