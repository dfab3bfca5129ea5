# Option declarations and definition properties.
#
# A declaration is `mkOption { type; default; description; ... }`, tagged
# `_type = "option"`. Definitions may be wrapped in properties, each a tagged
# attrset the module system interprets:
#   mkIf cond x       _type "if"       dropped unless cond is true
#   mkMerge [ ... ]   _type "merge"    several definitions in one place
#   mkOverride p x    _type "override" priority p (lower wins); plain
#                                      definitions have 100, mkDefault 1000,
#                                      mkForce 50, option defaults 1500
#   mkOrder p x       _type "order"    position among merged definitions
#                                      (mkBefore 500, default 1000, mkAfter 1500)
lib:
let
  inherit (builtins) foldl' head length tail;
in
rec {
  mkOption = attrs: attrs // { _type = "option"; };

  isOption = v: builtins.isAttrs v && (v._type or null) == "option";

  mkEnableOption =
    name:
    mkOption {
      type = lib.types.bool;
      default = false;
      example = true;
      description = "Whether to enable ${name}.";
    };

  mkPackageOption =
    pkgs: name: default:
    mkOption {
      type = lib.types.package;
      default = pkgs.${default};
      description = "The ${name} package to use.";
    };

  mkIf = condition: content: {
    _type = "if";
    inherit condition content;
  };

  mkMerge = contents: {
    _type = "merge";
    inherit contents;
  };

  mkOverride = priority: content: {
    _type = "override";
    inherit priority content;
  };

  defaultPriority = 100;
  mkOptionDefault = mkOverride 1500;
  mkDefault = mkOverride 1000;
  mkForce = mkOverride 50;

  mkOrder = priority: content: {
    _type = "order";
    inherit priority content;
  };

  mkBefore = mkOrder 500;
  mkAfter = mkOrder 1500;

  # `- In 'file': value` lines, as in every module-system error message.
  showDefs =
    defs: lib.concatMapStrings (d: "\n- In '${d.file}': ${lib.showValue d.value}") defs;

  # Merge functions for option types: `loc` is the option path, `defs` a
  # non-empty list of { file; value; }.
  mergeEqualOption =
    loc: defs:
    let
      first = head defs;
    in
    if length defs == 1 then
      first.value
    else
      foldl' (
        acc: d:
        if d.value == first.value then
          acc
        else
          throw "The option '${lib.showOption loc}' has conflicting definition values:${showDefs defs}\nUse `lib.mkForce value` or `lib.mkDefault value` to change the priority on any of these definitions."
      ) first.value (tail defs);

  mergeOneOption =
    loc: defs:
    if length defs == 1 then
      (head defs).value
    else
      throw "The option '${lib.showOption loc}' is defined multiple times while it's expected to be unique.\nDefinition values:${showDefs defs}\nUse `lib.mkForce value` or `lib.mkDefault value` to change the priority on any of these definitions.";

  # Merging for options without a type: one definition wins alone; lists
  # concatenate, attrsets merge (right-biased), anything else must be equal.
  mergeDefaultOption =
    loc: defs:
    let
      values = map (d: d.value) defs;
    in
    if length defs == 1 then
      (head defs).value
    else if lib.all builtins.isList values then
      builtins.concatLists values
    else if lib.all builtins.isAttrs values then
      foldl' (a: b: a // b) { } values
    else
      mergeEqualOption loc defs;
}
