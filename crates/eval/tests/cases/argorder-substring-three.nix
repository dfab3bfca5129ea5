let fail = n: throw "argument ${n} forced"; in
builtins.substring 0 true (fail "third")
