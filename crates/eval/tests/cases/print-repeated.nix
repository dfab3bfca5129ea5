let x = { a = 1; }; l = [ 1 2 3 ]; in [ x x l l ]
