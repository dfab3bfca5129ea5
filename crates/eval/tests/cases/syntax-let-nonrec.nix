let a = 1; f = n: n * 10; in let b = a + 1; c = f b; inherit a; g = x: let y = x + a; in y * 2; in [ a b c (g 3) (let z = { inherit b; }; w = z.b; in w) ]
