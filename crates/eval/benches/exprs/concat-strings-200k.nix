builtins.stringLength (builtins.concatStringsSep "," (builtins.genList (i: toString i) 200000))
