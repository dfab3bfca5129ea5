# A duplicated dynamic attribute (a name known only at run time) among a
# few names (found by a scan of the names so far).
let a = "a"; b = "b"; in
{ x = 1; ${a} = 2; ${b} = 3; ${a} = 4; }
