# zipAttrsWith groups by name: few groups (a scan of the groups) and more
# than eight (a hash index built on the way), values in list order, the
# result sorted by name, the function called lazily per group.
with builtins;
let
  sets = genList (i: listToAttrs (genList (j: { name = "k${toString (i * 7 + j * 5 - (i * 7 + j * 5) / 13 * 13)}"; value = i * 10 + j; }) 4)) 6;
in
[
  (zipAttrsWith (n: v: v) [ { a = 1; b = 2; } { b = 3; c = 4; } { a = 5; } ])
  (zipAttrsWith (n: v: [ n v ]) sets)
  (attrNames (zipAttrsWith (n: v: throw "lazy") sets))
  (zipAttrsWith (n: v: v) [ ])
  (zipAttrsWith (n: v: length v) (genList (i: { "x${toString (i - i / 10 * 10)}" = i; }) 40))
]
