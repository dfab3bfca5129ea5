builtins.replaceStrings [ "a" ] [ "b" ] ./.
