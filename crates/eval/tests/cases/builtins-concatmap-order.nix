# concatMap checks each result right after its call: the first element's
# non-list result fails before the second element's call throws.
builtins.concatMap (x: if x == 0 then 1 else throw "later") [ 0 1 ]
