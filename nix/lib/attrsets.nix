# Attribute-set helpers, built on the native attrset builtins.
lib:
let
  inherit (builtins)
    attrNames
    filter
    foldl'
    isAttrs
    listToAttrs
    mapAttrs
    removeAttrs
    zipAttrsWith
    ;
in
rec {
  inherit (builtins)
    attrNames
    attrValues
    catAttrs
    getAttr
    hasAttr
    intersectAttrs
    listToAttrs
    mapAttrs
    removeAttrs
    zipAttrsWith
    ;

  nameValuePair = name: value: { inherit name value; };

  filterAttrs = pred: set: removeAttrs set (filter (n: !pred n set.${n}) (attrNames set));

  mapAttrsToList = f: set: map (n: f n set.${n}) (attrNames set);

  mapAttrs' = f: set: listToAttrs (mapAttrsToList f set);

  concatMapAttrs = f: set: foldl' (acc: n: acc // f n set.${n}) { } (attrNames set);

  genAttrs =
    names: f:
    listToAttrs (
      map (n: {
        name = n;
        value = f n;
      }) names
    );

  optionalAttrs = cond: set: if cond then set else { };

  # { found; value; } for the value at `path` in `set`.
  lookupPath =
    path: set:
    foldl' (
      acc: name:
      if acc.found && isAttrs acc.value && acc.value ? ${name} then
        {
          found = true;
          value = acc.value.${name};
        }
      else
        {
          found = false;
          value = null;
        }
    ) {
      found = true;
      value = set;
    } path;

  # The value at `path` in `set`, or `default` when some step is missing.
  attrByPath =
    path: default: set:
    let
      r = lookupPath path set;
    in
    if r.found then r.value else default;

  hasAttrByPath = path: set: (lookupPath path set).found;

  # { a = { b = value; }; } from [ "a" "b" ] and value.
  setAttrByPath =
    path: value:
    foldl' (acc: name: { ${name} = acc; }) value (lib.reverseList path);

  # Right-biased recursive merge of two attrsets (nested attrsets merge, the
  # rest is replaced). Derivations are not merged into.
  recursiveUpdate =
    lhs: rhs:
    zipAttrsWith (
      n: vs:
      if builtins.length vs == 2 && isPlainAttrs (builtins.elemAt vs 0) && isPlainAttrs (builtins.elemAt vs 1) then
        recursiveUpdate (builtins.elemAt vs 0) (builtins.elemAt vs 1)
      else
        lib.last vs
    ) [ lhs rhs ];

  isPlainAttrs = v: isAttrs v && !(isDerivation v);

  isDerivation = v: isAttrs v && (v.type or null) == "derivation";

  # Recursively map leaves (non-attrset values and derivations).
  mapAttrsRecursive =
    f: set:
    let
      go = path: v: if isPlainAttrs v then mapAttrs (n: go (path ++ [ n ])) v else f path v;
    in
    mapAttrs (n: go [ n ]) set;
}
