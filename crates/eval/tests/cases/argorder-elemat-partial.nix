let fail = n: throw "argument ${n} forced"; in
let f = builtins.elemAt (fail "first"); in f (fail "second")
