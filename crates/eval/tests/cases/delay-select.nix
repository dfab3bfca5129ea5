# Arguments and bindings that select from a variable (delayed without a
# thunk when the set and the attribute are already there): laziness of
# missing names, failing attributes, unforced sets, `or`, dynamic names,
# nested paths, recursive frames and a set being filled.
let
  s = { a = 1; b = throw "b"; c = { d = [ 2 ]; e = throw "e"; }; f = x: x + 1; };
  t = builtins.seq s.c s;
  k = x: 0;
  id = x: x;
  n = "a";
  u = { a = throw "u"; };
  lazy = { x = s.missing; y = s.b; z = s.c.e; w = t.c.missing.deeper; v = u.a; };
  r = rec { p = q.m; q = { m = 5; }; o = p + 1; };
in [
  (k s.missing)
  (k s.b)
  (k s.c.e)
  (k s.a.b)
  (id s.a)
  (id s.c.d)
  (map (f: f 2) [ s.f ])
  (id s.missing or 7)
  (id s.${n})
  (builtins.attrNames lazy)
  (builtins.tryEval lazy.z).success
  (builtins.tryEval lazy.y).success
  (builtins.tryEval lazy.v).success
  r.o
  (let x = { y = 3; }; z = x.y; in z)
  (let g = { h = g.i; i = 4; }; in g.h)
]
