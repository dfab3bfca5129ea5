import /nonexistent-ndeploy-case/missing.nix
