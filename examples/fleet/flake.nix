{
  description = "Example ndeploy fleet: two web servers, a database and a monitoring host";

  # No inputs: ndeploy's Nix library is imported from this repository by
  # relative path (the flake's source is the whole git checkout).
  outputs =
    { self }:
    let
      ndeploy = import ../../nix;
      host =
        module:
        ndeploy.nixosSystem {
          system = "x86_64-linux";
          modules = [
            ./modules/common.nix
            module
          ];
        };
    in
    {
      nixosConfigurations = {
        web-1 = host ./hosts/web-1.nix;
        web-2 = host ./hosts/web-2.nix;
        db-1 = host ./hosts/db-1.nix;
        monitor-1 = host ./hosts/monitor-1.nix;
      };
    };
}
