# Lambdas in attributes, list elements, let bindings, defaults and arguments
# are closures at once (no thunk); they must behave as the lazy ones.
let
  r = rec { f = x: if x == 0 then 0 else g (x - 1); g = x: f x; };
  l = [ (x: x + 1) ({ a, b ? (y: y * 10) }: a + b 2) ];
  s = { inherit (r) f; h = y: r.g y; k = self: self.h; };
  d = { p ? (x: x + 100) }: p 1;
  apply = f: f 5;
in [
  (r.f 10)
  ((builtins.elemAt l 0) 1)
  ((builtins.elemAt l 1) { a = 1; })
  (builtins.functionArgs (builtins.elemAt l 1))
  (s.h 3)
  ((s.k s) 4)
  (builtins.isFunction s.f)
  (builtins.typeOf (builtins.head l))
  (map (f: f 2) [ (x: x * 3) (x: -x) ])
  (d { })
  (d { p = x: x; })
  (apply (x: x * x))
  (builtins.attrNames (builtins.mapAttrs (n: v: x: v) { a = 1; b = 2; }))
]
