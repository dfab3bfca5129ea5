# A dynamic attribute (a name known only at run time) that repeats a
# static one, among a few names.
let a = "a"; in
{ a = 1; ${a} = 2; }
