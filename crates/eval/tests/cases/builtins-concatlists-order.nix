# concatLists forces its elements in order: the first non-list fails
# before a later element is forced.
builtins.concatLists [ [ 1 ] 2 (throw "later") ]
