let fail = n: throw "argument ${n} forced"; in
builtins.hashString "sha257" (fail "second")
