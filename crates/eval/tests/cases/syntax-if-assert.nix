let f = x: assert x > 0; if x > 5 then "big" else "small"; in [ (f 1) (f 10) ]
