#!/bin/sh
# Generate a Nix file with a DAG of N derivations (default 3000) for the
# instantiate tests and benchmark (benches/drv-dag.sh):
#   gen-drv-dag.sh [N] > dag.nix; nix-instantiate --readonly-mode dag.nix
# Deterministic (fixed awk seed). Each derivation depends on up to 4 earlier
# ones; every 7th has outputs out/dev/lib and later ones reference its dev or
# lib output; every 50th is fixed-output (flat, sha256 or SRI); every 30th has
# a builtins.toFile input; every 40th uses passAsFile; every 90th uses
# __structuredAttrs. The value is the list of all N derivations.
n=${1:-3000}
awk -v n="$n" 'BEGIN {
  srand(4242);
  print "let";
  print "  mk = name: attrs: derivation ({ inherit name; system = \"x86_64-linux\"; builder = \"/bin/sh\"; args = [ \"-c\" \"echo $name > $out\" ]; } // attrs);";
  for (i = 0; i < n; i++) {
    deps = "";
    k = (i == 0) ? 0 : 1 + int(rand() * 4);
    for (j = 0; j < k; j++) {
      d = int(rand() * i);
      if (d % 7 == 0 && d % 50 != 0) {
        r = rand();
        ref = (r < 0.4) ? "d" d ".dev" : (r < 0.7) ? "d" d ".lib" : "d" d;
      } else {
        ref = "d" d;
      }
      deps = deps " " ref;
    }
    extra = "";
    if (i % 7 == 0 && i % 50 != 0) extra = extra " outputs = [ \"out\" \"dev\" \"lib\" ];";
    if (i % 50 == 0) {
      if (i % 100 == 0)
        extra = extra " outputHashAlgo = \"sha256\"; outputHash = builtins.hashString \"sha256\" \"d" i "\";";
      else
        extra = extra " outputHash = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"; outputHashMode = \"recursive\";";
    }
    if (i % 30 == 0) extra = extra " conf = builtins.toFile \"d" i ".conf\" \"value " i "\\n\";";
    if (i % 40 == 0) extra = extra " passAsFile = [ \"big\" ]; big = \"" i " big value\";";
    if (i % 90 == 0) extra = extra " __structuredAttrs = true; nested = { n = " i "; f = 0.5; l = [ true null ]; };";
    if (i % 50 == 0) deps = "";
    printf "  d%d = mk \"d%d\" { deps = [%s ];%s };\n", i, i, deps, extra;
  }
  print "in [";
  for (i = 0; i < n; i++) printf "  d%d\n", i;
  print "]";
}'
