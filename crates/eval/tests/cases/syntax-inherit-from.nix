let s = { a = 1; b = 2; }; in { inherit (s) a b; c = s.a or 9; d = s.z or 9; e = s ? a; f = s ? z.y; }
