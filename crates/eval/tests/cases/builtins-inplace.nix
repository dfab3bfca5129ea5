# Builtins that read their arguments in place (strings not copied, lists
# concatenated into one allocation, a single non-empty list shared): values,
# laziness and evaluation order as in Nix 2.8.
with builtins;
let
  long = concatStringsSep "" (genList (i: "x${toString i}") 100);
in
[
  (concatLists [ [ ] [ 1 2 ] [ ] ])
  (concatLists [ ])
  (concatLists [ [ 1 ] [ 2 3 ] [ ] [ 4 ] ])
  (concatMap (x: [ x x ]) [ 1 2 ])
  (concatMap (x: if x == 1 then [ ] else [ x ]) [ 1 2 3 ])
  (concatMap (x: [ ]) [ 1 2 ])
  (length (concatMap (x: [ (throw "unforced") ]) [ 1 2 ]))
  (tryEval (concatMap (x: if x == 0 then [ ] else throw "later") [ 0 1 ]))
  (tryEval (concatLists [ [ 1 ] (throw "second") ]))
  (toString "abc")
  (toString [ "a" 1 null true ])
  (substring 2 3 "hello world")
  (substring 0 100 "hi")
  (substring 5 (-1) long)
  (stringLength long)
  (stringLength "h\u00e9llo")
  (match "x([0-9]+)x.*" long)
  (match "k([0-9]+)" "k12")
  (split "(a)|b" "xaybz")
  (hasAttr "a" { a = 1; })
  (hasAttr "b" { a = 1; })
  (getAttr "b" { a = 1; b = 2; })
  (replaceStrings [ "a" "" ] [ "x" "-" ] "bab")
  (compareVersions "1.2.3" "1.10")
  (splitVersion "1.2pre3")
  (parseDrvName "hello-2.10")
  (baseNameOf "/a/b/c.nix")
  (dirOf "/a/b/c.nix")
  (hashString "sha256" "abc")
  (sort lessThan [ "b" "a" "ab" "" "B" ])
  (sort lessThan [ 3 (-1) 2 0 ])
  (sort lessThan [ 2 1.5 1 ])
  (sort lessThan [ [ 2 ] [ 1 3 ] [ 1 ] ])
]
