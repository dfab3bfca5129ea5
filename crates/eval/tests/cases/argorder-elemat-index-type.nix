let fail = n: throw "argument ${n} forced"; in
builtins.elemAt (fail "first") true
