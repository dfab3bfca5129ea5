# ndeploy's flake caller (evaluated by crate::flake::call_flake).
#
# Given the lock file's text, the root flake's source info (a fetchTree-like
# attribute set) and the root's subdirectory, returns the root flake as Nix
# 2.8 presents it: its outputs, overlaid with its source info, plus
# `inputs`, `outputs` and `sourceInfo`. Every other node is fetched with
# fetchTree from its locked attributes; `follows` inputs (lists of input
# names) are resolved from the root node.
lockText: rootSource: rootDir:
let
  lock = builtins.fromJSON lockText;

  # An input's node name: a name, or a follows path from the root.
  nodeName = spec: if builtins.isList spec then followPath lock.root spec else spec;
  followPath = start: path:
    builtins.foldl' (node: input: nodeName lock.nodes.${node}.inputs.${input}) start path;

  # A relative `path` input is relative to the root flake's directory.
  rootPath = rootSource.outPath + (if rootDir == "" then "" else "/" + rootDir);
  absolute = locked:
    if locked.type == "path" && builtins.substring 0 1 locked.path != "/"
    then locked // { path = rootPath + "/" + locked.path; }
    else locked;

  evalNode = key: node:
    let
      isRoot = key == lock.root;
      source =
        if isRoot then rootSource
        else builtins.fetchTree ((node.info or { }) // builtins.removeAttrs (absolute node.locked) [ "dir" ]);
      dir = if isRoot then rootDir else node.locked.dir or "";
      flake = import (source.outPath + (if dir == "" then "" else "/" + dir) + "/flake.nix");
      inputs = builtins.mapAttrs (_: spec: nodes.${nodeName spec}) (node.inputs or { });
      outputs = flake.outputs (inputs // { self = result; });
      result = outputs // source // {
        inherit inputs outputs;
        sourceInfo = source;
      };
    in
    if node.flake or true then
      assert builtins.isFunction flake.outputs; result
    else
      source;

  nodes = builtins.mapAttrs evalNode lock.nodes;
in
nodes.${lock.root}
