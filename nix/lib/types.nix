# Option types. A type is { _type = "option-type"; name; description;
# check; merge; } where `check value` accepts one definition's value and
# `merge loc defs` combines the (checked, priority-filtered, ordered)
# definitions [ { file; value; } ] into the option's value. Composite types
# merge their elements through `lib.mergeDefinitions`, so mkIf / mkMerge /
# mkOverride also work inside lists and attribute sets, and element errors
# name the element's full path. `typeMerge other` (when present) returns the
# type combining two declarations of the same option, or null.
lib:
let
  inherit (builtins)
    all
    concatLists
    concatStringsSep
    elem
    filter
    head
    isAttrs
    isBool
    isFunction
    isInt
    isList
    isPath
    isString
    length
    mapAttrs
    substring
    toJSON
    zipAttrsWith
    ;
  inherit (lib)
    mergeDefinitions
    mergeEqualOption
    mergeOneOption
    mergeDefaultOption
    showOption
    showDefs
    ;

  mkOptionType =
    {
      name,
      description ? name,
      check ? (_: true),
      merge ? mergeDefaultOption,
      ...
    }@attrs:
    attrs
    // {
      _type = "option-type";
      inherit description check merge;
    };

  # Per-element merging of attrset definitions. Returns name -> mergeDefinitions result.
  mergeAttrsElems =
    elemType: loc: defs:
    zipAttrsWith (name: defs': mergeDefinitions (loc ++ [ name ]) elemType defs') (
      map (
        d:
        mapAttrs (_: v: {
          inherit (d) file;
          value = v;
        }) d.value
      ) defs
    );

  # typeMerge of a wrapper type (`wrap elemType`, named `name`): merge the
  # element types.
  mergeWrapped =
    name: wrap: elemType: other:
    if other.name == name && elemType ? typeMerge then
      let
        m = elemType.typeMerge other.nestedTypes.elemType;
      in
      if m == null then null else wrap m
    else
      null;

  types = rec {
    inherit mkOptionType;

    isType = name: t: isAttrs t && (t._type or null) == "option-type" && t.name == name;

    # Accepts anything; at most one definition.
    raw = mkOptionType {
      name = "raw";
      description = "raw value";
      merge = mergeOneOption;
    };

    unspecified = mkOptionType {
      name = "unspecified";
      description = "unspecified value";
    };

    anything = mkOptionType {
      name = "anything";
      description = "anything";
      merge =
        loc: defs:
        let
          values = map (d: d.value) defs;
        in
        if all (v: isAttrs v && !(lib.isDerivation v)) values then
          mapAttrs (_: r: r.mergedValue) (
            lib.filterAttrs (_: r: r.isDefined) (mergeAttrsElems anything loc defs)
          )
        else if length defs == 1 then
          (head defs).value
        else if all isList values then
          concatLists values
        else
          mergeEqualOption loc defs;
    };

    bool = mkOptionType {
      name = "bool";
      description = "boolean";
      check = isBool;
      merge = mergeEqualOption;
    };

    int = mkOptionType {
      name = "int";
      description = "signed integer";
      check = isInt;
      merge = mergeEqualOption;
    };

    ints = {
      between =
        lowest: highest:
        mkOptionType {
          name = "intBetween";
          description = "integer between ${toString lowest} and ${toString highest} (both inclusive)";
          check = v: isInt v && v >= lowest && v <= highest;
          merge = mergeEqualOption;
        };
      unsigned = mkOptionType {
        name = "unsignedInt";
        description = "unsigned integer, meaning >=0";
        check = v: isInt v && v >= 0;
        merge = mergeEqualOption;
      };
      positive = mkOptionType {
        name = "positiveInt";
        description = "positive integer, meaning >0";
        check = v: isInt v && v > 0;
        merge = mergeEqualOption;
      };
    };

    port = ints.between 0 65535 // {
      name = "port";
      description = "16 bit unsigned integer; between 0 and 65535 (both inclusive)";
    };

    str = mkOptionType {
      name = "str";
      description = "string";
      check = isString;
      merge = mergeEqualOption;
    };

    nonEmptyStr = mkOptionType {
      name = "nonEmptyStr";
      description = "non-empty string";
      check = v: isString v && builtins.match "[ \t\n]*" v == null;
      merge = mergeEqualOption;
    };

    strMatching =
      pattern:
      mkOptionType {
        name = "strMatching ${toJSON pattern}";
        description = "string matching the pattern ${pattern}";
        check = v: isString v && builtins.match pattern v != null;
        merge = mergeEqualOption;
      };

    # Strings concatenated with `sep` (in mkOrder order).
    separatedString =
      sep:
      mkOptionType {
        name = "separatedString";
        description = "strings concatenated with ${toJSON sep}";
        check = isString;
        merge = _: defs: concatStringsSep sep (map (d: d.value) defs);
      };

    lines = separatedString "\n" // {
      name = "lines";
    };
    commas = separatedString ",";

    # An absolute path: a Nix path, a string starting with "/" or a derivation.
    path = mkOptionType {
      name = "path";
      description = "path";
      check = v: isPath v || (isString v && substring 0 1 v == "/") || lib.isDerivation v;
      merge = mergeEqualOption;
    };

    package = mkOptionType {
      name = "package";
      description = "package";
      check = v: lib.isDerivation v || (isString v && lib.hasPrefix builtins.storeDir v);
      merge = mergeEqualOption;
    };

    attrs = mkOptionType {
      name = "attrs";
      description = "attribute set";
      check = isAttrs;
      merge = _: defs: builtins.foldl' (a: d: a // d.value) { } defs;
    };

    enum =
      values:
      mkOptionType {
        name = "enum";
        description =
          if values == [ ] then
            "impossible (empty enum)"
          else
            "one of ${concatStringsSep ", " (map lib.showValue values)}";
        check = v: elem v values;
        merge = mergeEqualOption;
        inherit values;
      };

    nullOr =
      t:
      mkOptionType {
        name = "nullOr";
        description = "null or ${t.description}";
        check = v: v == null || t.check v;
        merge =
          loc: defs:
          let
            nulls = filter (d: d.value == null) defs;
          in
          if nulls == [ ] then
            t.merge loc defs
          else if length nulls == length defs then
            null
          else
            throw "The option '${showOption loc}' is defined both null and not null. Definition values:${showDefs defs}";
        nestedTypes.elemType = t;
        typeMerge = mergeWrapped "nullOr" nullOr t;
      };

    listOf =
      elemType:
      mkOptionType {
        name = "listOf";
        description = "list of ${elemType.description}";
        check = isList;
        merge =
          loc: defs:
          concatLists (
            lib.imap1 (
              n: d:
              concatLists (
                lib.imap1 (
                  m: v:
                  (mergeDefinitions (loc ++ [ "[definition ${toString n}-entry ${toString m}]" ]) elemType [
                    {
                      inherit (d) file;
                      value = v;
                    }
                  ]).optionalValue
                ) d.value
              )
            ) defs
          );
        nestedTypes.elemType = elemType;
        typeMerge = mergeWrapped "listOf" listOf elemType;
      };

    # Attribute sets whose values are merged per attribute; attributes whose
    # definitions are all `mkIf false` are absent.
    attrsOf =
      elemType:
      mkOptionType {
        name = "attrsOf";
        description = "attribute set of ${elemType.description}";
        check = isAttrs;
        merge =
          loc: defs:
          let
            merged = mergeAttrsElems elemType loc defs;
          in
          mapAttrs (_: r: r.mergedValue) (lib.filterAttrs (_: r: r.isDefined) merged);
        nestedTypes.elemType = elemType;
        typeMerge = mergeWrapped "attrsOf" attrsOf elemType;
      };

    # Like attrsOf, but the set's names are known without evaluating any
    # value (an attribute defined only under `mkIf false` throws when used).
    lazyAttrsOf =
      elemType:
      mkOptionType {
        name = "lazyAttrsOf";
        description = "lazy attribute set of ${elemType.description}";
        check = isAttrs;
        merge = loc: defs: mapAttrs (_: r: r.mergedValue) (mergeAttrsElems elemType loc defs);
        nestedTypes.elemType = elemType;
      };

    either =
      a: b:
      mkOptionType {
        name = "either";
        description = "${a.description} or ${b.description}";
        check = v: a.check v || b.check v;
        merge =
          loc: defs:
          if all (d: a.check d.value) defs then
            a.merge loc defs
          else if all (d: b.check d.value) defs then
            b.merge loc defs
          else
            throw "The option '${showOption loc}' has definitions of different types ('${a.description}' and '${b.description}') that cannot be merged. Definition values:${showDefs defs}";
      };

    oneOf =
      ts:
      if ts == [ ] then throw "types.oneOf needs at least one type" else builtins.foldl' either (head ts) (builtins.tail ts);

    # A set of options evaluated as its own module system. Each definition is
    # a module (attrset, function or path); module functions receive `name`
    # (the attribute name under attrsOf) and `lib`, `config`, `options`.
    submoduleWith =
      {
        modules,
        specialArgs ? { },
      }:
      mkOptionType {
        name = "submodule";
        description = "submodule";
        check = v: isAttrs v || isFunction v || isPath v;
        merge =
          loc: defs:
          (lib.evalModules {
            inherit modules;
            locatedModules = defs;
            declareModuleArgs = false;
            specialArgs = specialArgs // {
              name = lib.last loc;
            };
            prefix = loc;
          }).config;
        getSubModules = modules;
        typeMerge =
          other:
          if other.name == "submodule" then
            submoduleWith {
              modules = modules ++ other.getSubModules;
              inherit specialArgs;
            }
          else
            null;
      };

    submodule = modules: submoduleWith { modules = lib.toList modules; };
  };
in
types
