# Small list and set literals given as arguments or bindings (built at once
# instead of delayed): elements stay lazy, literals in recursive frames may
# refer to the frame, nested and bigger literals, `with` on a literal.
let
  k = x: 0;
  id = x: x;
  s = { a = throw "a"; b = [ (throw "b") 1 ]; c = { d = throw "d"; }; };
  r = rec { p = { q = p; v = 1; }; l = [ l.length or 2 ]; m = [ p.v ]; };
  big = { a1 = 1; a2 = 2; a3 = 3; a4 = 4; a5 = 5; a6 = 6; a7 = 7; a8 = 8; a9 = throw "nine"; };
  self = let x = { y = x; z = 3; }; in x;
in [
  (k { a = throw "x"; })
  (k [ (throw "y") ])
  (builtins.length (id [ (throw "z") 2 ]))
  (builtins.elemAt (id [ (throw "z") 2 ]) 1)
  (builtins.attrNames s)
  (builtins.elemAt s.b 1)
  r.p.q.q.v
  r.m
  self.y.y.z
  big.a8
  (with { w = 4; }; w)
  (builtins.tryEval (id { a = throw "t"; }).a).success
  (map (x: x.n) [ { n = 1; } { n = 2; } ])
]
