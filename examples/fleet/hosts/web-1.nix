{
  imports = [ ../modules/web.nix ];
  networking.hostName = "web-1";
}
