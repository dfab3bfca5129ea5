let fail = n: throw "argument ${n} forced"; in
builtins.concatMap true (fail "second")
