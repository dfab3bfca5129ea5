# The web server role: nginx serving ../files/www, tagged @web.
{ config, lib, ... }:
{
  deployment.tags = [ "web" ];

  services.nginx = {
    enable = true;
    virtualHosts.${config.networking.fqdn} = {
      serverAliases = [ "www.example.internal" ];
      root = ../files/www;
      locations."/api" = "proxy_pass http://db-1.example.internal:8080;";
    };
  };

  deployment.keys."api-token" = {
    text = "example-token-not-a-secret";
    user = "nginx";
    group = "nginx";
    permissions = "0640";
  };
  deployment.keys."tls.key".keyFile = "/etc/ndeploy-secrets/tls.key";

  deployment.healthChecks = lib.mkAfter [
    {
      http = "http://${config.networking.fqdn}/";
      timeout = 5;
      retries = 5;
    }
  ];
}
