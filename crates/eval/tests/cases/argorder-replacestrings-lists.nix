let fail = n: throw "argument ${n} forced"; in
builtins.replaceStrings [ "a" ] true (fail "third")
