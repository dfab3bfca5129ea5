builtins.readFile /.
