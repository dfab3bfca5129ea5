builtins.compareVersions "1" ./.
