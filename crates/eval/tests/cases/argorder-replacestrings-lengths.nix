let fail = n: throw "argument ${n} forced"; in
builtins.replaceStrings [ (fail "pattern") ] [ ] (fail "third")
