# Module-system semantics, one case per attribute. Each case evaluates a
# small configuration against ./modules/options.nix and returns plain data;
# tests/e2e/nixlib.rs evaluates this file with
#   nix-instantiate --eval --strict --json nix/tests/semantics.nix
# and compares every case with the value it expects.
let
  lib = import ../lib;
  inherit (lib)
    mkIf
    mkMerge
    mkDefault
    mkForce
    mkOverride
    mkBefore
    mkAfter
    mkOrder
    ;
  eval = modules: (lib.evalModules { modules = [ ./modules/options.nix ] ++ modules; }).config;
  evalFull = modules: lib.evalModules { modules = [ ./modules/options.nix ] ++ modules; };
in
{
  # Defaults apply only when nothing is defined; mkDefault beats the default,
  # a plain definition beats mkDefault, mkForce beats everything.
  priorities = {
    default = (eval [ ]).name;
    mkDefault = (eval [ { name = mkDefault "soft"; } ]).name;
    plainOverMkDefault = (eval [
      { name = mkDefault "soft"; }
      { name = "plain"; }
    ]).name;
    mkForceOverPlain = (eval [
      { name = mkForce "forced"; }
      { name = "plain"; }
    ]).name;
    mkOverrideLowest = (eval [
      { count = mkOverride 60 1; }
      { count = mkOverride 40 2; }
      { count = 3; }
    ]).count;
    # Lists from definitions of lower priority are dropped, not concatenated.
    listDefaultReplaced = (eval [ { list = [ "mine" ]; } ]).list;
    listMkDefaultDropped = (eval [
      { list = mkDefault [ "soft" ]; }
      { list = [ "hard" ]; }
    ]).list;
    equalDefinitionsAgree = (eval [
      { name = "same"; }
      { name = "same"; }
    ]).name;
  };

  conditions = {
    mkIfTrue = (eval [ { name = mkIf true "yes"; } ]).name;
    mkIfFalseKeepsDefault = (eval [ { name = mkIf false "no"; } ]).name;
    # The condition reads the configuration it is part of.
    selfReferential =
      (eval [
        (
          { config, ... }:
          {
            enable = true;
            name = mkIf config.enable "enabled";
            count = if config.enable then 1 else 0;
          }
        )
      ]).name;
    # mkIf around a set of options is pushed down to each option.
    pushedDown =
      let
        c = eval [
          (
            { config, ... }:
            mkIf (config.count > 1) {
              name = "big";
              nested.deep.value = 5;
            }
          )
          { count = 2; }
        ];
      in
      [
        c.name
        c.nested.deep.value
      ];
    pushedDownFalse =
      (eval [
        (mkIf false { nested.deep.value = 5; })
        { count = 0; }
      ]).nested.deep.value;
    mkMergeOfConditions = (eval [
      {
        list = mkMerge [
          (mkIf true [ "a" ])
          (mkIf false [ "b" ])
          [ "c" ]
        ];
      }
    ]).list;
    mkIfInsideAttrsOf = (eval [
      {
        items = {
          kept = mkIf true 1;
          dropped = mkIf false 2;
        };
      }
    ]).items;
  };

  ordering = {
    listBeforeAfter = (eval [
      { list = [ "middle" ]; }
      { list = mkAfter [ "last" ]; }
      { list = mkBefore [ "first" ]; }
    ]).list;
    linesOrder = (eval [
      { text = mkAfter "c"; }
      { text = "b"; }
      { text = mkOrder 10 "a"; }
    ]).text;
    # Without properties, definitions keep module order (imports follow the
    # modules that import them).
    moduleOrder = (eval [
      { list = [ "one" ]; }
      {
        imports = [ { list = [ "three" ]; } ];
        list = [ "two" ];
      }
    ]).list;
  };

  submodules = {
    attrsOfSubmodule =
      let
        c = eval [
          { users.alice.uid = 1000; }
          {
            users.alice.groups = [ "wheel" ];
            users.bob = { };
          }
          { users.alice.groups = [ "users" ]; }
        ];
      in
      c.users;
    nameOverridesHome = (eval [ { users.carol.name = "caroline"; } ]).users.carol.home;
    submoduleAsFunction = (eval [
      {
        users.dave =
          { name, ... }:
          {
            uid = builtins.stringLength name;
          };
      }
    ]).users.dave.uid;
    listOfSubmodule = (eval [
      {
        checks = [
          { cmd = "true"; }
          {
            cmd = "false";
            retries = 0;
          }
        ];
      }
    ]).checks;
    mkIfInsideSubmodule = (eval [
      {
        users.erin = {
          uid = mkIf false 1;
          groups = mkIf true [ "g" ];
        };
      }
    ]).users.erin;
    # A second declaration of a submodule option adds options to it.
    declarationsMerge = (eval [
      ./modules/extends-users.nix
      { users.frank.uid = 7; }
    ]).users.frank;
  };

  imports = {
    # A file imported twice (from two modules) is evaluated once.
    dedup =
      (eval [
        { imports = [ ./modules/imported-twice.nix ]; }
        { imports = [ ./modules/imported-twice.nix ]; }
      ]).list;
    moduleArgs =
      (eval [
        { _module.args.greeting = "hi"; }
        (
          { greeting, ... }:
          {
            name = greeting;
          }
        )
      ]).name;
    specialArgs =
      (lib.evalModules {
        modules = [
          ./modules/options.nix
          (
            { host, ... }:
            {
              imports = [ { name = host; } ];
            }
          )
        ];
        specialArgs.host = "from-special-args";
      }).config.name;
    explicitConfigAndOptions =
      let
        c = eval [
          {
            options.extra = lib.mkOption {
              type = lib.types.int;
              default = 1;
            };
            config.count = 4;
          }
        ];
      in
      [
        c.extra
        c.count
      ];
  };

  types = {
    nullOrSet = (eval [ { maybe = "set"; } ]).maybe;
    nullOrUnset = (eval [ ]).maybe;
    eitherInt = (eval [ { either = 3; } ]).either;
    eitherStr = (eval [ { either = "three"; } ]).either;
    enumValue = (eval [ { mode = "fast"; } ]).mode;
    portValue = (eval [ { port = 65535; } ]).port;
    anythingMerges = (eval [
      {
        anything = {
          a = 1;
          l = [ 1 ];
        };
      }
      {
        anything = {
          b.c = true;
          l = [ 2 ];
        };
      }
    ]).anything;
    pathString = (eval [ { file = "/srv/data"; } ]).file;
    # A Nix path stays a path (not copied to the store by the module system).
    pathIsPath = builtins.isPath (eval [ { file = ./modules/options.nix; } ]).file;
    packageName =
      (eval [ { package = (import ../pkgs { system = "x86_64-linux"; }).hello; } ]).package.name;
    # Properties work at any depth of an `anything` value, even with one definition.
    anythingProperties = (eval [
      {
        anything = {
          a.b = lib.mkIf false 1;
          a.c = lib.mkIf true 2;
          d = mkMerge [ { e = 3; } ];
        };
      }
    ]).anything;
    apply = (eval [ { upper = "abc"; } ]).upper;
    readOnlyDefault = (eval [ ]).fixed;
  };

  options =
    let
      o =
        (evalFull [
          { name = mkDefault "soft"; }
          ./modules/conflict-a.nix
        ]).options;
    in
    {
      nameIsDefined = o.name.isDefined;
      nameHighestPrio = o.name.highestPrio;
      nameValue = o.name.value;
      nameFiles = map baseNameOf o.name.files;
      countIsDefined = o.count.isDefined;
      nestedLoc = o.nested.deep.value.loc;
    };

  extendModules =
    let
      base = evalFull [ { count = 1; } ];
      extended = base.extendModules { modules = [ { count = mkForce 2; } ]; };
    in
    [
      base.config.count
      extended.config.count
    ];
}
