# elem reads both sides in place: mixed types, numbers across int/float,
# sets and lists by value, the element unforced on an empty list; sort's
# merge order with a comparator that is not an order, stability, and
# lazy elements compared only as the comparator asks.
with builtins;
let
  l = genList (i: "s${toString i}") 20;
in
[
  (elem (throw "unforced") [ ])
  (elem "s7" l)
  (elem "s20" l)
  (elem 1 [ "1" 1.0 ])
  (elem { a = [ 1 ]; } [ { a = [ 2 ]; } { a = [ 1 ]; } ])
  (elem [ 1 2 ] [ [ 1 ] [ 1 2 ] ])
  (elem null [ false 0 "" null ])
  (sort (a: b: true) [ 1 2 3 4 5 ])
  (sort (a: b: false) [ 5 4 3 2 1 ])
  (map (x: x.k) (sort (a: b: a.v < b.v) (genList (i: { k = i; v = i - i / 3 * 3; }) 10)))
  (sort lessThan [ "b" "a" "c" "a" ])
  (tryEval (length (sort (a: b: a < b) [ (throw "forced") ])))
  (sort lessThan [ 3 1.5 2 ])
]
