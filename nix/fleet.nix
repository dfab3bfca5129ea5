# Fleet helpers: the expressions ndeploy's evaluator calls (and the tests call
# with nix-instantiate to get C++ Nix's answer for the same hosts).
#
# A *source* is one of
#   - flake outputs: hosts from `nixosConfigurations.<host>` (each value with
#     `config.system.build.toplevel`), deploy-rs `deploy.nodes.<host>` and a
#     colmena hive in `colmena`;
#   - a colmena hive / plain fleet: `{ meta ? {}; defaults ? module;
#     <host> = module or evaluated configuration; }`.
# For every host a *node* { toplevel; deployment; } is built, and
#
#   hosts source        => { <host> = { drvPath; outPath; deployment; }; }
#   hostsJSON source    => the same as a JSON string (for --json users)
#   deployments source  => { <host> = deployment; }   (no toplevel evaluated)
#   toplevels source    => { <host> = toplevel derivation; }
#   configurations src  => { <host> = evaluated configuration; } (module hosts)
#
# `deployment` is plain JSON-able data with every field present:
#   { targetHost; targetPort; targetUser; tags; buildOnTarget; sshOptions;
#     keys = { <name> = { name; text; keyFile; destDir; path; user; group;
#                         permissions; uploadAt; }; };
#     healthChecks = [ { cmd; http; timeout; retries; } ]; }
# Hosts without ndeploy's deployment module (e.g. nixpkgs NixOS systems) get
# the defaults: targetHost = host name, targetUser = "root", the rest empty;
# so do hosts that set neither networking.hostName nor deployment.targetHost.
# Precedence when a flake has several sources for one host: the toplevel comes
# from nixosConfigurations, then deploy.nodes, then colmena; deployment
# settings from the configuration's `deployment` option if it has one, else
# from the deploy-rs node.
let
  lib = import ./lib;
  evalConfig = import ./system.nix;
  inherit (builtins)
    attrNames
    filter
    isAttrs
    mapAttrs
    ;

  # Hive attributes that are not hosts.
  hiveReserved = [
    "meta"
    "defaults"
  ];

  # An evaluated system. Results of evalModules (`_type = "configuration"`,
  # also nixpkgs' NixOS systems) are recognised without evaluating them, so
  # listing a fleet's hosts does not evaluate every host.
  isConfiguration =
    v:
    isAttrs v
    && v ? config
    && (
      (v._type or null) == "configuration"
      || (isAttrs v.config && lib.hasAttrByPath [ "system" "build" "toplevel" ] v.config)
    );

  isFlake =
    v: (v._type or null) == "flake" || v ? nixosConfigurations || v ? deploy || v ? colmena;

  defaultDeployment = name: {
    targetHost = name;
    targetPort = null;
    targetUser = "root";
    tags = [ ];
    buildOnTarget = false;
    sshOptions = [ ];
    keys = { };
    healthChecks = [ ];
  };

  # Plain data from a configuration's `deployment` option (ndeploy's module,
  # or colmena's, whose names it shares).
  deploymentOfOption =
    name: d:
    let
      def = defaultDeployment name;
    in
    {
      targetHost = d.targetHost or def.targetHost;
      targetPort = d.targetPort or null;
      targetUser = d.targetUser or def.targetUser;
      tags = d.tags or [ ];
      buildOnTarget = d.buildOnTarget or false;
      sshOptions = d.sshOptions or [ ];
      keys = mapAttrs (kname: k: rec {
        name = k.name or kname;
        text = k.text or null;
        keyFile = if (k.keyFile or null) == null then null else toString k.keyFile;
        destDir = toString (k.destDir or "/run/keys");
        path = k.path or "${destDir}/${name}";
        user = k.user or "root";
        group = k.group or "root";
        permissions = k.permissions or "0600";
        uploadAt = k.uploadAt or "pre-activation";
      }) (d.keys or { });
      healthChecks = map (h: {
        cmd = h.cmd or null;
        http = h.http or null;
        timeout = h.timeout or 10;
        retries = h.retries or 3;
      }) (d.healthChecks or [ ]);
    };

  deploymentOfDeployRs =
    name: node:
    defaultDeployment name
    // {
      targetHost = node.hostname or name;
      targetUser = node.sshUser or node.user or "root";
      sshOptions = node.sshOpts or [ ];
      buildOnTarget = node.remoteBuild or false;
      tags = node.tags or [ ];
    };

  # Neither networking.hostName nor deployment.targetHost set: the target is
  # the host's attribute name (as in colmena), not the default "nixos".
  targetFromName =
    c:
    (c.options.networking.hostName.highestPrio or 0) >= 1500
    && (c.options.deployment.targetHost.highestPrio or 0) >= 1500;

  nodeOfConfiguration = name: c: {
    toplevel = c.config.system.build.toplevel;
    deployment =
      if c.config ? deployment then
        deploymentOfOption name c.config.deployment
        // lib.optionalAttrs (targetFromName c) { targetHost = name; }
      else
        defaultDeployment name;
  };

  # colmena's `meta.nixpkgs`: a package set as is; a path, or a set with
  # `outPath` (a flake input), is imported and called with { }; a function
  # is called with { }.
  hivePkgs =
    meta:
    let
      n = meta.nixpkgs or null;
    in
    if n == null then
      null
    else if builtins.typeOf n == "path" || (isAttrs n && n ? outPath) then
      import n { }
    else if builtins.isFunction n then
      n { }
    else
      n;

  # How hive nodes are evaluated: as colmena does, with the package set's
  # `nixos/lib/eval-config.nix` (NixOS's for nixpkgs; ndeploy's own, which
  # is this library's system.nix, for ndeploy's package set), else with
  # this library's system.nix. A foreign eval-config (NixOS) gets ndeploy's
  # deployment options module, as colmena adds its own.
  hiveEvaluator =
    npkgs:
    let
      entry = if isAttrs npkgs && npkgs ? path then npkgs.path + "/nixos/lib/eval-config.nix" else null;
      own = entry == null || builtins.pathExists (npkgs.path + "/modules/deployment.nix");
    in
    if entry != null && builtins.pathExists entry then
      {
        evalConfig = import entry;
        extraModules = if own then [ ] else [ ./modules/deployment.nix ];
      }
    else
      {
        inherit evalConfig;
        extraModules = [ ];
      };

  # What all hosts of a hive share (the package set, the evaluator, the
  # host names): computed once per hive, also when hosts are evaluated one
  # at a time (see `host`).
  hiveContext =
    hive:
    let
      meta = hive.meta or { };
      npkgs = hivePkgs meta;
    in
    {
      inherit hive meta npkgs;
      evaluator = hiveEvaluator npkgs;
      names = filter (n: !(builtins.elem n hiveReserved)) (attrNames hive);
    };

  # Evaluated configurations of a hive / plain fleet.
  hiveConfigurationsIn =
    ctx:
    let
      inherit (ctx)
        hive
        meta
        npkgs
        evaluator
        ;
      configs = lib.genAttrs ctx.names (
        name:
        let
          v = hive.${name};
        in
        if isConfiguration v then
          v
        else
          evaluator.evalConfig {
            system = meta.system or (if isAttrs npkgs then npkgs.system or null else null);
            pkgs = if isAttrs npkgs then npkgs else null;
            modules = evaluator.extraModules ++ [
              (hive.defaults or { })
              v
              {
                _file = toString ./fleet.nix;
                networking.hostName = lib.mkDefault name;
              }
            ];
            specialArgs =
              (meta.specialArgs or { })
              // (meta.nodeSpecialArgs.${name} or { })
              // {
                inherit name;
                nodes = configs;
              };
          }
      );
    in
    configs;

  hiveConfigurations = hive: hiveConfigurationsIn (hiveContext hive);

  flakeConfigurations =
    flake: lib.filterAttrs (_: isConfiguration) (flake.nixosConfigurations or { });

  # What all hosts of a source share (see hiveContext).
  sourceContext =
    source:
    if isFlake source then
      { hive = if source ? colmena then hiveContext source.colmena else null; }
    else
      { hive = hiveContext source; };

  configurationsIn =
    source: ctx:
    if isFlake source then
      (if ctx.hive != null then hiveConfigurationsIn ctx.hive else { }) // flakeConfigurations source
    else
      hiveConfigurationsIn ctx.hive;

  configurations = source: configurationsIn source (sourceContext source);

  # The nodes of `source` whose evaluated configurations are `configs`.
  nodesWith =
    source: configs:
    if isFlake source then
      let
        deployNodes = source.deploy.nodes or { };
        fromDeployRs = mapAttrs (
          name: node:
          let
            path = node.profiles.system.path or (throw "deploy.nodes.${name} has no profiles.system.path");
            c = configs.${name} or null;
          in
          {
            toplevel =
              if c != null then
                c.config.system.build.toplevel
              else if isConfiguration path then
                path.config.system.build.toplevel
              else
                path;
            deployment =
              if c != null && c.config ? deployment then
                deploymentOfOption name c.config.deployment
              else
                deploymentOfDeployRs name node;
          }
        ) deployNodes;
      in
      mapAttrs nodeOfConfiguration configs // fromDeployRs
    else
      mapAttrs nodeOfConfiguration configs;

  nodes = source: nodesWith source (configurations source);

  # One host's node and evaluated configuration (null for a deploy-rs node
  # without one), computed afresh by every call: a driver evaluating hosts
  # one by one keeps nothing of a finished host alive (hosts reached through
  # `nodes` are evaluated again).
  host =
    source:
    let
      ctx = sourceContext source;
    in
    name:
    let
      configs = configurationsIn source ctx;
    in
    {
      node = (nodesWith source configs).${name};
      configuration = configs.${name} or null;
    };
in
{
  inherit
    configurations
    nodes
    host
    isConfiguration
    defaultDeployment
    ;

  hosts =
    source:
    mapAttrs (_: n: {
      drvPath = n.toplevel.drvPath;
      outPath = n.toplevel.outPath;
      inherit (n) deployment;
    }) (nodes source);

  # `hosts` as a JSON string with the same field names. (`builtins.toJSON`
  # and `--json` print an attrset that has `outPath` as that path alone, so
  # `hosts` itself cannot be printed as JSON.)
  hostsJSON =
    source:
    "{"
    + builtins.concatStringsSep "," (
      lib.mapAttrsToList (
        name: n:
        builtins.toJSON name
        + ":{\"drvPath\":"
        + builtins.toJSON n.toplevel.drvPath
        + ",\"outPath\":"
        + builtins.toJSON n.toplevel.outPath
        + ",\"deployment\":"
        + builtins.toJSON n.deployment
        + "}"
      ) (nodes source)
    )
    + "}";

  deployments = source: mapAttrs (_: n: n.deployment) (nodes source);

  toplevels = source: mapAttrs (_: n: n.toplevel) (nodes source);

  # Host names matching any selector: a name, or "@tag".
  select =
    selectors: source:
    let
      deps = mapAttrs (_: n: n.deployment) (nodes source);
      matches =
        name: sel:
        if lib.hasPrefix "@" sel then
          builtins.elem (lib.removePrefix "@" sel) deps.${name}.tags
        else
          sel == name;
    in
    filter (name: builtins.any (matches name) selectors) (attrNames deps);
}
