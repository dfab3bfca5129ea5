# `system.build.toplevel`: one derivation holding the whole configuration:
#   etc/...                       every enabled environment.etc file
#   sw/...                        links to the files of environment.systemPackages
#   activate                      runs the activation snippets, then points
#                                 $root/run/current-system at this toplevel
#   bin/switch-to-configuration   switch|boot|test|dry-activate (see the template)
#   hostname, system              plain-text facts about the system
# Failed assertions abort the evaluation of the toplevel with their messages.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;

  etcFiles = lib.filter (f: f.enable) (lib.attrValues config.environment.etc);
  etcAttrs = lib.imap0 (i: f: {
    inherit i f;
    attr = "etc${toString i}";
  }) etcFiles;

  activationScripts = lib.concatStrings (
    lib.mapAttrsToList (name: text: ''
      # ${name}
      ${text}
    '') config.system.activationScripts
  );

  failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);

  toplevel = derivation (
    {
      name = "ndeploy-system-${config.networking.hostName}";
      system = config.nixpkgs.system;
      builder = "/bin/sh";
      args = [
        "-eu"
        ./toplevel-builder.sh
      ];
      activateTemplate = ./activate.sh.in;
      switchTemplate = ./switch-to-configuration.sh.in;
      hostName = config.networking.hostName;
      targetSystem = config.nixpkgs.system;
      systemPackages = config.environment.systemPackages;
      etcAttrs = map (e: e.attr) etcAttrs;
      inherit activationScripts;
      activationShouldFail = config.system.activationShouldFail;
      passAsFile = [ "activationScripts" ] ++ map (e: e.attr) etcAttrs;
    }
    // lib.listToAttrs (
      lib.concatMap (e: [
        (lib.nameValuePair e.attr e.f.text)
        (lib.nameValuePair "${e.attr}Target" e.f.target)
        (lib.nameValuePair "${e.attr}Mode" e.f.mode)
      ]) etcAttrs
    )
  );
in
{
  options.system.build = mkOption {
    type = types.lazyAttrsOf types.raw;
    default = { };
    description = "Build results of the configuration; `toplevel` is the system itself.";
  };

  config.system.build.toplevel =
    if failed != [ ] then
      throw "Failed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failed}"
    else
      toplevel;
}
