# Small general-purpose functions.
lib: {
  id = x: x;
  const = x: _: x;
  mod = a: b: a - (a / b) * b;
  min = a: b: if a < b then a else b;
  max = a: b: if a > b then a else b;
  boolToString = b: if b then "true" else "false";
}
