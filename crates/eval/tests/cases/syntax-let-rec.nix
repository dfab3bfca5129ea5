let a = 1; b = a + c; c = 2; in rec { x = b; y = x * 2; inherit a; }
