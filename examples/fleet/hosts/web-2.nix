{ lib, ... }:
{
  imports = [ ../modules/web.nix ];
  networking.hostName = "web-2";
  deployment.targetHost = "10.0.1.12";
  # A second vhost only on this machine.
  services.nginx.virtualHosts."static.example.internal".root = ../files/www;
  services.nginx.workerProcesses = 4;
}
