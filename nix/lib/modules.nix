# The module system: `evalModules { modules; specialArgs ? {}; prefix ? []; }`.
#
# Design (three passes, all lazy):
# 1. Collect. Each module (a path, a function or an attrset) is loaded into
#    { key; file; imports; options; config; }. `builtins.genericClosure` walks
#    `imports` and keeps the first module per key (a path's key is the path,
#    an inline module's key is its position under its parent), so a file
#    imported from many places counts once. Module functions get
#    `specialArgs // { lib, config, options, specialArgs }` plus, for names
#    they declare, `config._module.args.<name>` — looked up lazily, so
#    `_module.args` may itself be defined by modules.
# 2. Merge, level by level. At each attribute level the declarations and
#    definitions are grouped by name (`zipAttrsWith`); mkIf/mkMerge/mkOverride
#    around an attrset are pushed down one level without forcing conditions,
#    so a condition may depend on `config`. A declared option gets
#    `mergeDefinitions`; a namespace recurses; a defined name with no
#    declaration is recorded as unmatched.
# 3. Per option: properties are discharged (mkIf false drops, mkMerge
#    splits), only the definitions with the best priority are kept, they are
#    stably sorted by mkOrder, type-checked and merged by the option type. The
#    option default is a definition at priority 1500, evaluated only when no
#    definition beats it. One definition without properties (the common
#    case) takes a fast path. Submodules are evaluated the same way, per
#    element, with `name` in their arguments and without `_module.args`.
#
# Invariants: the attribute names of `config` depend only on declarations;
# values are computed on demand and shared. The returned `config` throws
# (on first use) if any definition has no matching declaration; modules see
# the unchecked config, so the check never recurses into itself.
lib:
let
  inherit (builtins)
    all
    attrNames
    concatMap
    filter
    foldl'
    functionArgs
    genericClosure
    head
    isAttrs
    isFunction
    isPath
    isString
    length
    mapAttrs
    removeAttrs
    sort
    typeOf
    zipAttrsWith
    ;
  inherit (lib)
    isOption
    mkIf
    mkOverride
    mkOptionDefault
    showOption
    showValue
    showDefs
    ;

  # The attributes a module may have besides its configuration.
  moduleMetaAttrs = [
    "_file"
    "key"
    "imports"
    "meta"
    "_class"
    "disabledModules"
  ];

  # The file an inline attrset was written in, if the evaluator knows it.
  positionFile =
    fallback: m:
    let
      names = attrNames m;
      pos =
        if names == [ ] || !(builtins ? unsafeGetAttrPos) then
          null
        else
          builtins.unsafeGetAttrPos (head names) m;
    in
    if pos == null || !(lib.hasPrefix "/" pos.file) then fallback else pos.file;

  # Call a module function with the arguments it asks for.
  applyModule =
    args: key: f:
    if isFunction f then
      let
        extra = mapAttrs (
          name: _:
          args.${name} or args.config._module.args.${name}
            or (throw "Module '${key}' takes the argument '${name}', which is neither in specialArgs nor in _module.args.")
        ) (functionArgs f);
      in
      f (args // extra)
    else
      f;

  # A module value turned into { key; file; imports; options; config; }.
  normalize =
    file: key: m:
    if !isAttrs m then
      throw "Module '${key}' is not an attribute set or a function returning one, but has type ${typeOf m}: ${showValue m}"
    else
      let
        file' = m._file or file;
        key' = toString (m.key or key);
        explicit = m ? config || m ? options;
        extraAttrs = attrNames (removeAttrs m (moduleMetaAttrs ++ [ "options" "config" ]));
      in
      if explicit && extraAttrs != [ ] then
        throw "Module '${file'}' has an unsupported attribute '${head extraAttrs}'. A module with a top-level 'config' or 'options' attribute must put all configuration under 'config'."
      else
        {
          key = key';
          file = file';
          imports = m.imports or [ ];
          options = m.options or { };
          config = if explicit then m.config or { } else removeAttrs m moduleMetaAttrs;
        };

  # Load one raw module. `parentFile` names inline modules; `key` is the
  # position-derived key used unless the module is a path or sets `key`.
  loadModule =
    args: parentFile: key: raw:
    if isPath raw || isString raw then
      let
        path = toString raw;
      in
      normalize path path (applyModule args path (import raw))
    else if isFunction raw then
      let
        m = applyModule args key raw;
      in
      normalize (if isAttrs m then positionFile parentFile m else parentFile) key m
    else if isAttrs raw then
      normalize (positionFile parentFile raw) key raw
    else
      throw "Module '${key}' (imported from '${parentFile}') is not a module (a path, a function or an attribute set) but has type ${typeOf raw}: ${showValue raw}";

  # `located`: [ { file; value; } ] modules whose file is known (submodule
  # definitions), keyed by position after `modules`.
  collectModules =
    args: modules: located:
    let
      item =
        parentFile: key: raw:
        let
          m = loadModule args parentFile key raw;
        in
        {
          key = m.key;
          module = m;
        };
      children =
        it:
        let
          imports = it.module.imports;
        in
        if builtins.isList imports then
          lib.imap1 (i: item it.module.file "${it.key}:anon-${toString i}") imports
        else
          throw "The 'imports' of module '${it.module.file}' must be a list, but it is a ${typeOf imports}.";
    in
    map (it: it.module) (genericClosure {
      startSet =
        lib.imap1 (i: item "<unknown-file>" "anon-${toString i}") modules
        ++ lib.imap1 (i: d: item d.file "def-${toString i}" d.value) located;
      operator = children;
    });

  # Definitions of a namespace (an attrset of options) as plain attrsets:
  # mkMerge splits, mkIf / mkOverride move onto every attribute.
  pushDown =
    loc: file: v:
    if !isAttrs v then
      throw "In '${file}': the definition of '${showOption loc}' must be an attribute set, because '${showOption loc}' is a set of options, but it is: ${showValue v}"
    else
      let
        t = v._type or null;
      in
      if t == "merge" then
        concatMap (pushDown loc file) v.contents
      else if t == "if" then
        map (mapAttrs (_: mkIf v.condition)) (pushDown loc file v.content)
      else if t == "override" then
        map (mapAttrs (_: mkOverride v.priority)) (pushDown loc file v.content)
      else if t == "order" then
        throw "In '${file}': mkBefore/mkAfter/mkOrder cannot be applied to '${showOption loc}', which is a set of options; apply it to an option's value."
      else
        [ v ];

  # One definition's value with its properties discharged: a list of
  # { file; prio; order; value; } (empty for mkIf false).
  discharge =
    loc: file: prio: order: v:
    if isAttrs v && v ? _type then
      let
        t = v._type;
      in
      if t == "merge" then
        concatMap (discharge loc file prio order) v.contents
      else if t == "if" then
        if v.condition == true then
          discharge loc file prio order v.content
        else if v.condition == false then
          [ ]
        else
          throw "In '${file}': the condition of mkIf for option '${showOption loc}' must be a Boolean, but it is: ${showValue v.condition}"
      else if t == "override" then
        discharge loc file v.priority order v.content
      else if t == "order" then
        discharge loc file prio v.priority v.content
      else
        [ { inherit file prio order; value = v; } ]
    else
      [ { inherit file prio order; value = v; } ];

  # Merge the definitions ({ file; value; }) of one option of type `type`.
  # Returns { defsFinal; isDefined; highestPrio; mergedValue; optionalValue; }
  # where optionalValue is [ value ] or [ ] (nothing defined).
  mergeDefinitions =
    loc: type: defs:
    if length defs == 1 && !(isProperty (head defs).value) then
      mergeSingle loc type 100 (head defs)
    else
      let
        discharged = concatMap (d: discharge loc d.file 100 1000 d.value) defs;
        highestPrio = foldl' (p: d: if d.prio < p then d.prio else p) 2147483647 discharged;
        best = filter (d: d.prio == highestPrio) discharged;
        defsFinal = if all (d: d.order == 1000) best then best else sort (a: b: a.order < b.order) best;
        isDefined = defsFinal != [ ];
        bad = filter (d: !type.check d.value) defsFinal;
        mergedValue =
          if !isDefined then
            throw "The option '${showOption loc}' was accessed but has no value defined. Try setting the option."
          else if bad != [ ] then
            typeError loc type bad
          else
            type.merge loc defsFinal;
      in
      {
        inherit
          defsFinal
          isDefined
          highestPrio
          mergedValue
          ;
        optionalValue = if isDefined then [ mergedValue ] else [ ];
      };

  # The fast path of mergeDefinitions: one definition without properties.
  mergeSingle =
    loc: type: prio: def:
    let
      mergedValue = if type.check def.value then type.merge loc [ def ] else typeError loc type [ def ];
    in
    {
      defsFinal = [ def ];
      isDefined = true;
      highestPrio = prio;
      inherit mergedValue;
      optionalValue = [ mergedValue ];
    };

  typeError =
    loc: type: bad:
    throw "A definition for option '${showOption loc}' is not of type '${type.description}'. Definition values:${showDefs bad}";

  isProperty =
    v:
    isAttrs v
    && v ? _type
    && (v._type == "if" || v._type == "merge" || v._type == "override" || v._type == "order");

  # Several declarations of one option: allowed when their types can merge
  # (submodules extend each other) and at most one gives a default.
  mergeDeclarations =
    loc: decls:
    if length decls == 1 then
      (head decls).options
    else
      let
        opts = map (d: d.options) decls;
        types = map (o: o.type or lib.types.unspecified) opts;
        merged = foldl' (
          acc: t: if acc == null || !(acc ? typeMerge) then null else acc.typeMerge t
        ) (head types) (builtins.tail types);
        withDefault = filter (d: d.options ? default) decls;
        files = lib.concatMapStringsSep ", " (d: "'${d.file}'") decls;
      in
      if merged == null then
        throw "The option '${showOption loc}' is declared more than once (in ${files}) with types that cannot be merged."
      else if length withDefault > 1 then
        throw "The option '${showOption loc}' has a default in more than one declaration (in ${files})."
      else
        foldl' (a: b: a // b) { } opts // { type = merged; };

  # One option: { value; option; } where `option` (the record under
  # `options`) is built only when asked for.
  evalOption =
    loc: decls: defs:
    let
      opt = mergeDeclarations loc decls;
      type = opt.type or lib.types.unspecified;
      hasDefault = opt ? default;
      # The default takes part only when nothing beats its priority, so it
      # is not even evaluated when the option is set.
      defaultFile = (head (filter (d: d.options ? default) decls)).file;
      res0 = mergeDefinitions loc type defs;
      res =
        if defs == [ ] && hasDefault && !(isProperty opt.default) then
          mergeSingle loc type 1500 {
            file = defaultFile;
            value = opt.default;
          }
        else if hasDefault && (!res0.isDefined || res0.highestPrio >= 1500) then
          mergeDefinitions loc type (
            defs
            ++ [
              {
                file = defaultFile;
                value = mkOptionDefault opt.default;
              }
            ]
          )
        else
          res0;
      readOnlyCheck =
        if (opt.readOnly or false) && length res.defsFinal > 1 then
          throw "The option '${showOption loc}' is read-only, but it is set multiple times. Definition values:${showDefs res.defsFinal}"
        else
          true;
      value =
        builtins.seq readOnlyCheck (if opt ? apply then opt.apply res.mergedValue else res.mergedValue);
    in
    {
      inherit value;
      option = opt // {
        inherit loc type value;
        isDefined = res.isDefined;
        highestPrio = res.highestPrio;
        definitions = map (d: d.value) res.defsFinal;
        definitionsWithLocations = map (d: { inherit (d) file value; }) res.defsFinal;
        files = map (d: d.file) res.defsFinal;
        declarations = map (d: d.file) decls;
      };
    };

  # Merge one attribute level. decls: [ { file; options; } ] where options is
  # an attrset of options and namespaces; defs: [ { file; value; } ].
  # Returns { config; options; unmatched; }.
  mergeLevel =
    withOptions: loc: decls: defs:
    let
      pushed = concatMap (
        d:
        map (v: {
          inherit (d) file;
          value = v;
        }) (pushDown loc d.file d.value)
      ) defs;
      defsByName = zipAttrsWith (_: ds: ds) (
        map (
          d:
          mapAttrs (_: v: {
            inherit (d) file;
            value = v;
          }) d.value
        ) pushed
      );
      declsByName = zipAttrsWith (_: ds: ds) (
        map (
          d:
          if isAttrs d.options && !(isOption d.options) then
            mapAttrs (_: o: {
              inherit (d) file;
              options = o;
            }) d.options
          else
            throw "In '${d.file}': the options declared under '${showOption loc}' must be an attribute set of options, but they are: ${showValue d.options}"
        ) decls
      );
      children = mapAttrs (
        name: ds:
        let
          loc' = loc ++ [ name ];
          ndefs = defsByName.${name} or [ ];
        in
        if isOption (head ds).options then
          if all (d: isOption d.options) ds then
            if withOptions then
              { options = (evalOption loc' ds ndefs).option; }
            else
              {
                config = (evalOption loc' ds ndefs).value;
                unmatched = [ ];
              }
          else
            throw "The option '${showOption loc'}' is declared as an option in '${(head ds).file}' and as a set of options elsewhere (${
              lib.concatMapStringsSep ", " (d: "'${d.file}'") ds
            })."
        else if all (d: !(isOption d.options)) ds then
          mergeLevel withOptions loc' ds ndefs
        else
          throw "The option '${showOption loc'}' is declared as a set of options in '${(head ds).file}' and as an option elsewhere (${
            lib.concatMapStringsSep ", " (d: "'${d.file}'") ds
          })."
      ) declsByName;
      undeclared = filter (n: !(declsByName ? ${n})) (attrNames defsByName);
    in
    if withOptions then
      { options = mapAttrs (_: c: c.options) children; }
    else
      {
      config = mapAttrs (_: c: c.config) children;
      unmatched =
        map (n: {
          loc = loc ++ [ n ];
          defs = defsByName.${n};
        }) undeclared
        ++ concatMap (n: children.${n}.unmatched) (attrNames children);
      };

  # The first leaf under an undeclared definition, to name it in the error
  # (at most 32 levels down, so cyclic values end too).
  firstLeaf =
    loc: v:
    if isAttrs v && !(v ? _type) && !(lib.isDerivation v) && v != { } && length loc < 32 then
      let
        n = head (attrNames v);
      in
      firstLeaf (loc ++ [ n ]) v.${n}
    else
      {
        inherit loc;
        value = v;
      };

  # Declares `_module.args`, through which modules pass arguments (such as
  # `pkgs`) to every module function.
  internalModule = {
    _file = toString ./modules.nix;
    key = "ndeploy-lib:internal";
    options._module.args = lib.mkOption {
      type = lib.types.lazyAttrsOf lib.types.raw;
      default = { };
      internal = true;
      description = "Arguments passed to every module function, in addition to specialArgs.";
    };
  };

  evalModules =
    {
      modules,
      specialArgs ? { },
      prefix ? [ ],
      # Internal: definitions to add as modules with their files (submodules).
      locatedModules ? [ ],
      # Internal: whether to declare `_module.args` (submodules do not, to
      # stay small; their modules get `name`, `lib`, `config`, `options`).
      declareModuleArgs ? true,
    }@evalArgs:
    let
      args = {
        lib = specialArgs.lib or lib;
        inherit config options specialArgs;
      }
      // specialArgs;
      collected = collectModules args (
        lib.optional declareModuleArgs internalModule ++ modules
      ) locatedModules;
      decls = filter (d: d.options != { }) (
        map (m: {
          inherit (m) file options;
        }) collected
      );
      defs = map (m: {
        inherit (m) file;
        value = m.config;
      }) collected;
      # `config` and `options` come from two separate merges (the second
      # runs only as far as `options` is used): the config merge keeps no
      # option records, so an evaluated configuration does not keep every
      # option's merge state alive.
      merged = mergeLevel false prefix decls defs;
      config = merged.config;
      options = (mergeLevel true prefix decls defs).options;
      checked =
        if merged.unmatched == [ ] then
          true
        else
          let
            u = head merged.unmatched;
            d = head u.defs;
            leaf = firstLeaf u.loc d.value;
          in
          throw "The option '${showOption leaf.loc}' does not exist. Definition values:${
            showDefs [
              {
                inherit (d) file;
                inherit (leaf) value;
              }
            ]
          }";
    in
    {
      _type = "configuration";
      config = builtins.seq checked config;
      inherit options;
      # The same evaluation with more modules (e.g. a test override).
      extendModules =
        {
          modules ? [ ],
        }:
        evalModules (evalArgs // { modules = evalArgs.modules ++ modules; });
    };
in
{
  inherit
    evalModules
    mergeDefinitions
    pushDown
    discharge
    ;
}
