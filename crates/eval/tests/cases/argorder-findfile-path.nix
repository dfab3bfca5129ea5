let fail = n: throw "argument ${n} forced"; in
builtins.findFile [ { prefix = "x"; } ] (fail "name")
