# Shared by every host of the example fleet.
{ config, pkgs, ... }:
{
  networking.domain = "example.internal";

  environment.systemPackages = [
    pkgs.htop
    pkgs.curl
  ];

  environment.etc.motd.text = "Welcome to ${config.networking.fqdn}, deployed by ndeploy.";

  users.users.ops = {
    isNormalUser = true;
    uid = 1000;
    extraGroups = [ "wheel" ];
    openssh.authorizedKeys.keys = [
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample ops@example"
    ];
  };

  services.node-exporter.enable = true;

  deployment.healthChecks = [ { cmd = "test -e /run/current-system"; } ];
}
