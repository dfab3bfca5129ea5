# The modules every ndeploy system is evaluated with (see ../system.nix).
[
  ./misc/nixpkgs.nix
  ./misc/assertions.nix
  ./deployment.nix
  ./networking.nix
  ./environment.nix
  ./users.nix
  ./systemd.nix
  ./services/nginx.nix
  ./services/postgresql.nix
  ./services/node-exporter.nix
  ./system/activation.nix
  ./system/toplevel.nix
]
