# A duplicated dynamic attribute (a name known only at run time) in a set
# with more than a few names (found by a hash set rather than a scan).
let p = "p"; h = "h"; in
{ a = 1; b = 2; c = 3; d = 4; e = 5; f = 6; g = 7; h = 8; i = 9; j = 10; k = 11; l = 12; m = 13; n = 14; o = 15; ${p} = 16; ${h} = 0; }
