# derivationStrict / derivation: paths, attributes, contexts (vs nix-instantiate).
let
  mk = name: attrs: derivation ({ inherit name; system = "x86_64-linux"; builder = "/bin/sh"; } // attrs);
  a = mk "a" { outputs = [ "out" "dev" ]; args = [ "-c" 1 true null [ "x" [ ] "y" ] ]; };
  b = mk "b" { dep = a.dev; both = [ a a.out ]; n = 3; f = 0.25; t = true; nil = null; };
  fixed = mk "fixed" { outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputHash = "1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h"; };
  sri = mk "sri" { outputHash = "sha1-C+7Hteo/D9vJXQ3UfzxbwnXaijM="; };
  structured = mk "structured" { __structuredAttrs = true; l = [ 1 "s" a.dev null ]; s.x = 1.5; outputs = [ "out" "lib" ]; };
  ignore = mk "ignore" { __ignoreNulls = true; gone = null; };
  whole = mk "whole" { d = builtins.unsafeDiscardOutputDependency b.drvPath; };
  strict = builtins.derivationStrict { name = "s"; system = "x"; builder = "y"; outputs = [ "one" "two" ]; };
in [
  a.drvPath a.outPath a.dev.outPath a.outputName a.dev.outputName a.type (builtins.attrNames a)
  (a.out.dev.out == a) (builtins.length a.all) a.drvAttrs.args
  b.drvPath b.outPath
  (builtins.getContext b.drvPath) (builtins.getContext a.dev.outPath) (builtins.getContext "${a}${a.dev}")
  (builtins.getContext (builtins.unsafeDiscardOutputDependency b.drvPath))
  fixed.drvPath fixed.outPath sri.drvPath sri.outPath
  structured.drvPath structured.lib.outPath ignore.drvPath whole.drvPath whole.outPath
  (builtins.attrNames strict) strict.two
  (builtins.placeholder "out") (builtins.placeholder "dev")
  (builtins.hasContext a.drvPath) (builtins.hasContext (builtins.unsafeDiscardStringContext a.drvPath))
]
