# genericClosure with string, path and list keys (strings and paths hashed
# by content, not identity), typeOf of every type, listToAttrs's first
# definition winning and its missing-attribute checks in order.
with builtins;
let
  strs = genericClosure {
    startSet = [ { key = "a"; } ];
    operator = x: if stringLength x.key < 4 then [ { key = "a"; } { key = "${x.key}b"; } { key = substring 0 1 x.key; } ] else [ ];
  };
  paths = genericClosure {
    startSet = [ { key = /tmp/x; } { key = /tmp/x; } ];
    operator = x: [ { key = /tmp + "/x"; } { key = /tmp/y; } ];
  };
  lists = genericClosure {
    startSet = [ { key = [ 1 ]; } ];
    operator = x: if length x.key < 3 then [ { key = x.key ++ [ 1 ]; } { key = [ 1 ]; } ] else [ ];
  };
in
[
  (map (x: x.key) strs)
  (map (x: toString x.key) paths)
  (map (x: length x.key) lists)
  (map typeOf [ null true 1 1.5 "s" /tmp { } [ ] (x: x) map (map (x: x)) ])
  (listToAttrs [ { name = "a"; value = 1; } { value = 2; name = "a"; } { name = "b"; value = 3; extra = 0; } ])
  (attrNames (listToAttrs (genList (i: { name = "n${toString (9 - i)}"; value = i; }) 10)))
]
