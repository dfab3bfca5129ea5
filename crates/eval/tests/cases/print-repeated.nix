let x = { a = 1; }; e = { }; l = [ 1 2 3 ]; n = [ ]; in [ x x e e l l n n (removeAttrs x [ "a" ]) (removeAttrs x [ "a" ]) ]
