builtins.div 4 true
