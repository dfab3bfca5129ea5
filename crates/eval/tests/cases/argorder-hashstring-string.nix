builtins.hashString "sha256" 1
