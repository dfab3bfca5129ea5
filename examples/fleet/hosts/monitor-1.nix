{ pkgs, ... }:
{
  networking.hostName = "monitor-1";
  deployment = {
    tags = [ "monitoring" ];
    targetPort = 2222;
    targetUser = "deploy";
    buildOnTarget = true;
    sshOptions = [
      "-o"
      "StrictHostKeyChecking=accept-new"
    ];
  };
  services.node-exporter.openFirewall = true;
  environment.systemPackages = [ pkgs.hello ];
  system.activationScripts.monitoring = ''
    mkdir -p "$root/var/lib/monitoring"
    echo "$systemConfig" > "$root/var/lib/monitoring/last-system"
  '';
}
