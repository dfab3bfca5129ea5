# Set operations that walk sorted sets (removeAttrs, intersectAttrs in each
# size regime, zipAttrsWith grouping), lookups around the linear-scan size,
# and new sets (not the argument) from removeAttrs/intersectAttrs («repeated»).
with builtins;
let
  big = listToAttrs (genList (i: { name = "k${toString (i * 7 - i * 7 / 40 * 40)}"; value = i; }) 40);
  eight = { a = 1; b = 2; c = 3; d = 4; e = 5; f = 6; g = 7; h = 8; };
  nine = eight // { i = 9; };
  s = { x = 1; };
in
[
  (attrNames (removeAttrs big [ "k3" "zz" "k3" "k0" "k12" "" ]))
  (removeAttrs eight [ ])
  (removeAttrs nine (attrNames eight))
  (intersectAttrs { k1 = null; k5 = null; nope = null; } big)
  (intersectAttrs big { k2 = "a"; k9 = "b"; other = "c"; })
  (intersectAttrs nine eight)
  (intersectAttrs { } big)
  (zipAttrsWith (n: vs: [ n vs ]) [ { b = 1; a = 2; } { } { c = 3; a = 4; } { b = 5; } ])
  (attrNames (zipAttrsWith (n: vs: length vs) (genList (i: { "n${toString (i - i / 7 * 7)}" = i; }) 30)))
  (map (n: [ (eight ? ${n}) (nine.${n} or null) ]) [ "a" "h" "i" "j" "" ])
  (catAttrs "a" [ eight nine { } { a = "z"; } ])
  [ s (removeAttrs s [ ]) s (intersectAttrs s s) (s // { }) ]
  (mapAttrs (n: v: "${n}=${toString v}") nine)
]
