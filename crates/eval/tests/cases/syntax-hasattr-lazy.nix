let x = { a = x ? a; b = x ? c.d; }; in x
