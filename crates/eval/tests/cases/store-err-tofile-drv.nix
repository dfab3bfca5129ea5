let mk = a: derivation ({ name = "x"; system = "s"; builder = "/bin/sh"; } // a); in builtins.toFile "f" "${mk { }}"
