builtins.div true 0
