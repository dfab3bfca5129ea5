let fail = n: throw "argument ${n} forced"; in
builtins.throw 1
