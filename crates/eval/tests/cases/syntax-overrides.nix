rec { __overrides = { b = 10; }; a = b + 1; b = 1; }
