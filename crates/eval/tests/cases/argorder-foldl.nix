let fail = n: throw "argument ${n} forced"; in
builtins.foldl' true 0 (fail "third")
