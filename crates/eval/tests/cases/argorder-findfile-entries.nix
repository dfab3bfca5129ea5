let fail = n: throw "argument ${n} forced"; in
builtins.findFile [ { path = "/"; } (fail "entry") ] (fail "name")
