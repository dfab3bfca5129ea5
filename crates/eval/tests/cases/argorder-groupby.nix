let fail = n: throw "argument ${n} forced"; in
builtins.groupBy true (fail "second")
