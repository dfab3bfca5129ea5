let fail = n: throw "argument ${n} forced"; in
builtins.unsafeGetAttrPos true (fail "second")
