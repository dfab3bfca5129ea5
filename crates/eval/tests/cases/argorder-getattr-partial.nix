let fail = n: throw "argument ${n} forced"; in
let f = builtins.getAttr true; in f (fail "second")
