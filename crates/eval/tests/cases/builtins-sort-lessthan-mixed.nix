# sort with lessThan compares strings and integers in place; other pairs
# as `<` does, with its error.
builtins.sort builtins.lessThan [ 1 "a" ]
