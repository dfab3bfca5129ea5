let fail = n: throw "argument ${n} forced"; in
builtins.compareVersions true (fail "second")
