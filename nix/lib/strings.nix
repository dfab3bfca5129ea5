# String helpers, plus `showOption` / `showValue` used by the module system's
# error messages. `showValue` never forces more than one level of a value and
# never instantiates derivations, so rendering an error cannot itself fail.
lib:
let
  inherit (builtins)
    attrNames
    concatStringsSep
    genList
    length
    match
    replaceStrings
    stringLength
    substring
    toJSON
    typeOf
    ;
in
rec {
  inherit (builtins)
    concatStringsSep
    match
    replaceStrings
    split
    stringLength
    substring
    toString
    ;

  concatStrings = concatStringsSep "";
  concatMapStrings = f: list: concatStringsSep "" (map f list);
  concatMapStringsSep = sep: f: list: concatStringsSep sep (map f list);
  concatLines = list: concatStringsSep "" (map (l: l + "\n") list);

  optionalString = cond: s: if cond then s else "";

  hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;
  hasSuffix =
    suffix: s:
    let
      ls = stringLength s;
      lx = stringLength suffix;
    in
    lx <= ls && substring (ls - lx) lx s == suffix;

  removePrefix =
    prefix: s:
    if hasPrefix prefix s then substring (stringLength prefix) (stringLength s) s else s;

  # Split on a literal (non-regex) separator.
  splitString =
    sep: s:
    builtins.filter builtins.isString (
      builtins.split (replaceStrings
        [ "\\" "." "[" "]" "(" ")" "{" "}" "*" "+" "?" "^" "$" "|" ]
        [ "\\\\" "\\." "\\[" "\\]" "\\(" "\\)" "\\{" "\\}" "\\*" "\\+" "\\?" "\\^" "\\$" "\\|" ]
        sep) s
    );

  escapeShellArg = a: "'" + replaceStrings [ "'" ] [ "'\\''" ] (toString a) + "'";
  escapeShellArgs = concatMapStringsSep " " escapeShellArg;

  makeBinPath = pkgs: concatMapStringsSep ":" (p: "${p}/bin") pkgs;

  fixedWidthString =
    width: filler: s:
    let
      missing = width - stringLength s;
    in
    if missing <= 0 then s else concatStrings (genList (_: filler) missing) + s;

  # An option path as users write it: networking.hostName, users.users."a.b".uid
  showOption =
    loc:
    concatMapStringsSep "." (
      part: if match "[A-Za-z_][A-Za-z0-9_'-]*" part != null then part else toJSON part
    ) loc;

  # A short rendering of any value for error messages.
  showValue =
    v:
    let
      t = typeOf v;
      shallow =
        x:
        let
          tx = typeOf x;
        in
        if tx == "list" then
          "[ … ]"
        else if tx == "set" then
          "{ … }"
        else
          showValue x;
    in
    if t == "string" then
      toJSON v
    else if t == "int" || t == "float" || t == "bool" || t == "null" then
      toJSON v
    else if t == "path" then
      toString v
    else if t == "lambda" then
      "«lambda»"
    else if t == "list" then
      if length v == 0 then
        "[ ]"
      else
        "[ "
        + concatMapStringsSep " " shallow (lib.take 8 v)
        + (if length v > 8 then " …" else "")
        + " ]"
    else if t == "set" then
      if lib.isDerivation v then
        "«derivation ${v.name or "?"}»"
      else if (v._type or null) == "if" then
        "mkIf …"
      else if (v._type or null) == "merge" then
        "mkMerge [ … ]"
      else if (v._type or null) == "override" then
        "mkOverride ${toString v.priority} …"
      else if attrNames v == [ ] then
        "{ }"
      else
        "{ " + concatMapStrings (n: "${showOption [ n ]} = …; ") (lib.take 8 (attrNames v)) + "}"
    else
      "«${t}»";
}
