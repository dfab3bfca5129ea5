let fail = n: throw "argument ${n} forced"; in
builtins.scopedImport (fail "first") (fail "second")
