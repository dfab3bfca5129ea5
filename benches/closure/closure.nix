# A NixOS-like closure for `ndeploy push` benchmarks (see compare.sh).
#
# Shape (defaults: ~1,500 paths, ~650 MB of incompressible data):
#   lib            one widely shared library (30 MB), referenced by every package
#   leaf-0..999    small packages (a few files, 20-300 KB), each -> lib
#   mid-0..449     packages (-> lib and 3 leaves), same sizes
#   big-0..39      medium packages (5 MB each) -> lib
#   huge-0..4      large packages (40 MB each) -> lib, a leaf
#   system         the toplevel -> every mid, big and huge
# `changed` lists leaf numbers whose seed differs (a "new generation"):
# they, the mids referencing them and the toplevel get new paths.
{ tag ? "bench", gen ? "g1", changed ? [ ], leaves ? 1000, mids ? 450, bigs ? 40, huges ? 5 }:
let
  mk = name: deps: files: size: seed: derivation {
    inherit name deps seed files size;
    system = builtins.currentSystem;
    PATH = "/usr/bin:/bin";
    builder = "/bin/sh";
    args = [ "-c" ''
      mkdir -p $out/share $out/bin
      i=0
      while [ $i -lt $files ]; do
        head -c $size /dev/urandom > $out/share/f$i
        i=$((i+1))
      done
      echo "$seed" > $out/seed
      printf '#!/bin/sh\necho hi\n' > $out/bin/run && chmod +x $out/bin/run
      for d in $deps; do echo $d >> $out/deps; ln -s $d $out/share/dep-$(basename $d) 2>/dev/null || true; done
    '' ];
  };
  n = i: toString i;
  lib = mk "${tag}-lib" [ ] 6 (5 * 1024 * 1024) "lib";
  # Pseudo-random small sizes: 20-300 KB over 1-4 files.
  small = i: 20000 + (i * 7919) - ((i * 7919) / 280000) * 280000;
  seedOf = i: if builtins.elem i changed then "${gen}-${n i}" else "g1-${n i}";
  leaf = builtins.genList (i: mk "${tag}-leaf-${n i}" [ lib ] (1 + i - (i / 4) * 4) (small i / (1 + i - (i / 4) * 4)) (seedOf i)) leaves;
  at = i: builtins.elemAt leaf (i - (i / leaves) * leaves);
  mid = builtins.genList (i: mk "${tag}-mid-${n i}" [ lib (at (i * 2)) (at (i * 2 + 1)) (at (i * 7 + 3)) ] 2 (small (i + 5000) / 2) "mid") mids;
  big = builtins.genList (i: mk "${tag}-big-${n i}" [ lib ] 5 (1024 * 1024) "big") bigs;
  huge = builtins.genList (i: mk "${tag}-huge-${n i}" [ lib (at i) ] 4 (10 * 1024 * 1024) "huge") huges;
in
mk "${tag}-system" (mid ++ big ++ huge) 1 1000 gen
