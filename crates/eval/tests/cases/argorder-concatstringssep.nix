let fail = n: throw "argument ${n} forced"; in
builtins.concatStringsSep true (fail "second")
