derivation { name = "x"; builder = "b"; }
