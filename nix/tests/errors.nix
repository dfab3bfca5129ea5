# Module-system errors, one case per attribute; every case must fail to
# evaluate. tests/e2e/nixlib.rs runs
#   nix-instantiate --eval --strict nix/tests/errors.nix -A <case>
# and checks the message (option name, offending value, defining file).
let
  lib = import ../lib;
  eval = modules: (lib.evalModules { modules = [ ./modules/options.nix ] ++ modules; }).config;
  system = modules: import ../system.nix {
    system = "x86_64-linux";
    inherit modules;
  };
in
{
  undefinedOption = eval [ ./modules/typo.nix ];

  typeMismatch = (eval [ ./modules/bad-type.nix ]).count;

  conflictingDefinitions =
    (eval [
      ./modules/conflict-a.nix
      ./modules/conflict-b.nix
    ]).name;

  uniqueDefinedTwice =
    (eval [
      { raw = 1; }
      { raw = 1; }
    ]).raw;

  usedButNotDefined = (eval [ ]).count;

  listElementType = (eval [ { list = [ "ok" 42 ]; } ]).list;

  relativePath = (eval [ { file = "relative/path"; } ]).file;

  notAPackage = (eval [ { package = "hello"; } ]).package;

  portOutOfRange = (eval [ { port = 70000; } ]).port;

  enumValue = (eval [ { mode = "reckless"; } ]).mode;

  nullOrConflict =
    (eval [
      { maybe = "a"; }
      { maybe = null; }
    ]).maybe;

  mkIfNotBool = (eval [ { name = lib.mkIf "yes" "x"; } ]).name;

  # One definition may set a read-only option; two may not.
  readOnlySetTwice =
    (eval [
      { fixed = "a"; }
      { fixed = "a"; }
    ]).fixed;

  submoduleUndefinedOption = (eval [ { users.alice.shel = "/bin/sh"; } ]).users.alice.name;

  namespaceNotAttrs = eval [ { nested = 5; } ];

  declaredTwice = eval [ { options.count = lib.mkOption { type = lib.types.int; }; } ];

  moduleNotAttrs = eval [ 42 ];

  configWithStrayAttribute = eval [
    {
      config.count = 1;
      count = 2;
    }
  ];

  missingModuleArgument = (eval [ ({ nonexistent, ... }: { name = nonexistent; }) ]).name;

  # ndeploy's own modules: a key needs text or keyFile (an assertion).
  keyWithoutSource =
    (system [
      {
        networking.hostName = "h";
        deployment.keys.secret.user = "root";
      }
    ]).config.system.build.toplevel.drvPath;

  badHostName =
    (system [ { networking.hostName = "not a hostname"; } ]).config.networking.hostName;
}
