# The database role: PostgreSQL reachable from the private network, tagged @db.
{ lib, ... }:
{
  deployment.tags = [ "db" ];

  services.postgresql = {
    enable = true;
    ensureDatabases = [ "app" ];
    settings = {
      listen_addresses = "*";
      max_connections = 200;
      log_connections = true;
    };
    authentication = "host app app 10.0.0.0/16 scram-sha-256";
  };

  deployment.keys."pg-password" = {
    text = "example-password-not-a-secret";
    user = "postgres";
    destDir = "/var/lib/postgresql/keys";
  };
}
