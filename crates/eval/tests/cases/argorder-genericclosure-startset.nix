let fail = n: throw "argument ${n} forced"; in
builtins.genericClosure { operator = fail "operator"; }
