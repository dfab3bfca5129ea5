# genList and foldl' compute lambdas of integer arithmetic at once
# (builtins/lists.rs); these must give what the ordinary calls give.
let
  n = 3;
  lazy = builtins.genList (x: x * n) 4;
in {
  arith = builtins.genList (x: x * 2) 5;
  nested = builtins.genList (i: i * n + 1 - i) 4;
  closure = (k: builtins.genList (i: i + k) 3) 10;
  ident = builtins.genList (x: x) 3;
  const = builtins.genList (x: "c") 2;
  compare = builtins.genList (x: x == 1) 3;
  division = builtins.genList (x: x / 2) 4;
  lists = builtins.genList (x: [ x ]) 2;
  lazyFn = builtins.length (builtins.genList throw 3);
  lazyBody = builtins.length (builtins.genList (x: throw "no") 3);
  shared = builtins.elemAt lazy 3 + builtins.length lazy;
  zero = builtins.genList (x: x) 0;
  sum = builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x) 100);
  sub = builtins.foldl' (a: b: a - b) 10 [ 1 2 3 ];
  last = builtins.foldl' (a: b: b) 0 [ 1 2 ];
  shadow = builtins.foldl' (a: a: a * 2) 0 [ 5 ];
  less = builtins.foldl' (a: b: a < b) 0 [ 1 ];
  mixed = builtins.foldl' (a: b: a + b) 1 [ 2 2.5 3 ];
  strings = builtins.foldl' (a: b: a + b) "x" [ "y" "z" ];
  lazyElems = builtins.foldl' (a: b: a + b) 0 (map (x: x * 2) [ 1 2 3 ]);
  outer = builtins.foldl' (a: b: a * n + b) 0 [ 1 2 ];
  strings2 = builtins.genList (i: toString (i * 2 - 1)) 3;
  joined = builtins.concatStringsSep "," (builtins.genList (i: toString i) 4);
  shadowed = let toString = x: x + 1; in builtins.genList (i: toString i) 2;
  typeOf = builtins.genList (i: builtins.typeOf i) 1;
}
