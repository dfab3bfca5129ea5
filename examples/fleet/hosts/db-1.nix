{
  imports = [ ../modules/db.nix ];
  networking.hostName = "db-1";
  deployment.tags = [ "primary" ];
}
