# ndeploy's package set: a handful of small packages built from shell
# scripts (no nixpkgs), with realistic names and versions and real
# dependencies: every program sources the shared core library `ndcore`, and
# some call other packages' programs. `system` defaults to the evaluating
# machine; pure evaluation (flakes) must pass it.
{
  system ? builtins.currentSystem,
}:
let
  support = import ./build-support.nix { inherit system; };
  inherit (support) mkPackage;

  pkgs = support // {
    inherit system;

    # Where NixOS-style tools (colmena) look for
    # `nixos/lib/eval-config.nix`: ndeploy's library directory.
    path = ../.;

    # The shared library every other package depends on.
    ndcore = mkPackage {
      pname = "ndcore";
      version = "1.0.0";
      description = "shared shell library of the ndeploy example packages";
      files."lib/ndcore.sh" = ''
        # ndcore: helpers shared by the ndeploy example packages.
        nd_version() { printf '%s %s\n' "$1" "$2"; }
        nd_log() { printf '[%s] %s\n' "$ND_PROG" "$*" >&2; }
        nd_usage() { printf 'usage: %s %s\n' "$ND_PROG" "$1" >&2; exit 2; }
      '';
    };

    hello = mkPackage {
      pname = "hello";
      version = "2.12";
      core = pkgs.ndcore;
      description = "prints a friendly greeting";
      bins.hello = ''
        ND_PROG=hello
        case "''${1:-}" in
          --version) nd_version hello 2.12 ;;
          *) echo "Hello, world!" ;;
        esac
      '';
    };

    htop = mkPackage {
      pname = "htop";
      version = "3.2.2";
      core = pkgs.ndcore;
      description = "interactive process viewer (stub)";
      bins.htop = ''
        ND_PROG=htop
        nd_version htop 3.2.2
      '';
    };

    curl = mkPackage {
      pname = "curl";
      version = "8.4.0";
      core = pkgs.ndcore;
      description = "URL transfer tool (stub)";
      bins.curl = ''
        ND_PROG=curl
        [ $# -gt 0 ] || nd_usage "URL"
        nd_log "would fetch $1"
      '';
    };

    nginx = mkPackage {
      pname = "nginx";
      version = "1.24.0";
      core = pkgs.ndcore;
      deps = [ pkgs.curl ];
      description = "HTTP server (stub that validates its configuration)";
      bins.nginx = ''
        ND_PROG=nginx
        case "''${1:-}" in
          -v) nd_version nginx 1.24.0 ;;
          -t) [ -f "''${2:-/etc/nginx/nginx.conf}" ] && echo "nginx: configuration file ok" ;;
          *) nd_log "serving with ''${2:-/etc/nginx/nginx.conf}" ;;
        esac
      '';
    };

    postgresql = mkPackage {
      pname = "postgresql";
      version = "15.4";
      core = pkgs.ndcore;
      description = "SQL database server (stub)";
      bins.postgres = ''
        ND_PROG=postgres
        case "''${1:-}" in
          --version) nd_version postgres 15.4 ;;
          *) nd_log "starting with data directory ''${PGDATA:-/var/lib/postgresql}" ;;
        esac
      '';
      bins.psql = ''
        ND_PROG=psql
        nd_version psql 15.4
      '';
    };

    prometheus-node-exporter = mkPackage {
      pname = "node_exporter";
      version = "1.6.1";
      core = pkgs.ndcore;
      deps = [ pkgs.curl ];
      description = "machine metrics exporter (stub)";
      bins.node_exporter = ''
        ND_PROG=node_exporter
        nd_version node_exporter 1.6.1
      '';
    };
  };
in
pkgs
