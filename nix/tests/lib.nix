# The library's helpers, one case per attribute; tests/e2e/nixlib.rs compares
# `nix-instantiate --eval --strict --json nix/tests/lib.nix` with its
# expectations.
let
  lib = import ../lib;
in
{
  lists = {
    imap0 = lib.imap0 (i: x: "${toString i}${x}") [ "a" "b" ];
    imap1 = lib.imap1 (i: x: i * x) [ 10 20 ];
    optional = [
      (lib.optional true 1)
      (lib.optional false 1)
    ];
    last = lib.last [ 1 2 3 ];
    init = lib.init [ 1 2 3 ];
    take = lib.take 2 [ 1 2 3 ];
    reverseList = lib.reverseList [ 1 2 3 ];
    flatten = lib.flatten [ 1 [ 2 [ 3 ] ] [ ] ];
    unique = lib.unique [ 3 1 3 2 1 ];
    range = lib.range 2 5;
    count = lib.count (x: x > 1) [ 1 2 3 ];
    sortOn = lib.sortOn (x: x.k) [
      { k = 2; v = "b"; }
      { k = 1; v = "a"; }
      { k = 2; v = "c"; }
    ];
    toList = [
      (lib.toList 1)
      (lib.toList [ 1 ])
    ];
  };
  attrsets = {
    filterAttrs = lib.filterAttrs (n: v: v > 1) { a = 1; b = 2; c = 3; };
    mapAttrsToList = lib.mapAttrsToList (n: v: n + v) { a = "1"; b = "2"; };
    mapAttrs' = lib.mapAttrs' (n: v: lib.nameValuePair "x-${n}" (v * 2)) { a = 1; };
    concatMapAttrs = lib.concatMapAttrs (n: v: { ${n} = v; "${n}2" = v; }) { a = 1; b = 2; };
    genAttrs = lib.genAttrs [ "a" "b" ] (n: n + n);
    attrByPath = [
      (lib.attrByPath [ "a" "b" ] 0 { a.b = 1; })
      (lib.attrByPath [ "a" "c" ] 0 { a.b = 1; })
      (lib.attrByPath [ "a" "b" "c" ] 0 { a.b = 1; })
    ];
    hasAttrByPath = lib.hasAttrByPath [ "a" "b" ] { a.b = null; };
    setAttrByPath = lib.setAttrByPath [ "a" "b" ] 1;
    recursiveUpdate = lib.recursiveUpdate {
      a.b = 1;
      a.c = 2;
      d = 1;
    } {
      a.b = 3;
      d.e = 4;
    };
    mapAttrsRecursive = lib.mapAttrsRecursive (path: v: lib.concatStringsSep "." path + "=${toString v}") {
      a.b = 1;
      c = 2;
    };
  };
  strings = {
    hasPrefix = [
      (lib.hasPrefix "ab" "abc")
      (lib.hasPrefix "b" "abc")
    ];
    hasSuffix = [
      (lib.hasSuffix "bc" "abc")
      (lib.hasSuffix "abcd" "abc")
    ];
    removePrefix = lib.removePrefix "@" "@web";
    splitString = lib.splitString "." "a.b..c";
    escapeShellArg = lib.escapeShellArg "it's";
    escapeShellArgs = lib.escapeShellArgs [ "a b" "c" ];
    concatLines = lib.concatLines [ "a" "b" ];
    fixedWidthString = lib.fixedWidthString 4 "0" "7";
    showOption = lib.showOption [ "users" "users" "a.b" "uid" ];
    showValue = map lib.showValue [
      "s"
      1
      true
      null
      [ 1 [ 2 ] { } ]
      { a = 1; }
      (lib.mkIf true 1)
      (x: x)
    ];
  };
  trivial = {
    mod = [
      (lib.mod 7 3)
      (lib.mod 6 3)
    ];
    minMax = [
      (lib.min 1 2)
      (lib.max 1 2)
    ];
    boolToString = lib.boolToString true;
  };
}
