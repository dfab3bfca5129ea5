# builtins.path / filterSource / toFile / storePath / interpolated paths (vs nix-instantiate).
let
  dir = ./store-data/dir;
  t = builtins.toFile "t.conf" "hello\n";
  refs = builtins.toFile "refs" "${t} ${dir}";
  p = builtins.path { path = dir; name = "renamed"; filter = path: type: baseNameOf path != "skip-me"; };
in [
  "${dir}" (builtins.getContext "${dir}")
  p (builtins.getContext p)
  (builtins.path { path = ./store-data/dir/file; recursive = false; })
  (builtins.path { path = ./store-data/dir/file; sha256 = "0mj5rgx8nmg09nzjm15b65a0cysk47xwrd4r4f96zy306bn7f8j4"; })
  (builtins.filterSource (path: type: type != "symlink") dir)
  (builtins.filterSource (path: type: type == "directory") dir)
  t refs (builtins.getContext refs)
  (builtins.storePath t) (builtins.getContext (builtins.storePath t))
  builtins.storeDir
]
