let fail = n: throw "argument ${n} forced"; in
let s = "${builtins.toFile "argorder" "x"}"; in [
  (builtins.getContext (builtins.head (builtins.split "Q" s)))
  (builtins.foldl' (a: b: b) (fail "initial") [ 1 ])
  (builtins.elem (fail "element") [ ])
  (builtins.attrNames (builtins.mapAttrs (fail "function") { a = 1; }))
  (builtins.length (builtins.genList (fail "function") 2))
  (builtins.seq 1 2)
  (builtins.tryEval (builtins.elemAt [ 1 ] (fail "index")))
  (builtins.addErrorContext (fail "message") 3)
  (let f = builtins.elemAt [ 4 5 ]; in f 1)
  (builtins.listToAttrs [ { name = "a"; value = 1; } { name = "a"; } ])
  (builtins.hashString "sha1" "")
  (builtins.match "a(b)?" "a")
  (builtins.split "(a)|b" "xaybz")
  (builtins.compareVersions "1.2" "1.10")
  (builtins.div 7 2)
  (builtins.div 7.0 2)
]
