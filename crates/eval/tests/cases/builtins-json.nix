with builtins; [ (toJSON { a = [ 1 2.5 "x\n" null true ]; b.c = { }; }) (fromJSON "{\"a\": [1, 2.5, \"s\"], \"b\": null}") (fromTOML "a = 1\n[t]\nb = \"x\"") ]
