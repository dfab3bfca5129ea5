let fail = n: throw "argument ${n} forced"; in
builtins.getAttr true (fail "second")
