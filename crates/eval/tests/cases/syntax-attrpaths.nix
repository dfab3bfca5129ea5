{ a.b.c = 1; a.b.d = 2; a.e = { f = 3; }; "q r" = 4; ${"dyn" + "amic"} = 5; }
