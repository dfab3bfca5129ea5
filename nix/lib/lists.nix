# List helpers. All are non-recursive (built on genList / foldl' /
# concatMap), so long lists cannot overflow the evaluator's stack.
lib:
let
  inherit (builtins)
    concatMap
    elem
    elemAt
    foldl'
    genList
    isList
    length
    ;
in
{
  inherit (builtins)
    all
    any
    concatLists
    concatMap
    elem
    elemAt
    filter
    foldl'
    genList
    head
    length
    map
    partition
    sort
    tail
    ;

  # f applied to each element and its index, counting from 0 / from 1.
  imap0 = f: list: genList (n: f n (elemAt list n)) (length list);
  imap1 = f: list: genList (n: f (n + 1) (elemAt list n)) (length list);

  optional = cond: x: if cond then [ x ] else [ ];
  optionals = cond: xs: if cond then xs else [ ];

  toList = x: if isList x then x else [ x ];

  # Last element; throws a clear error on an empty list.
  last =
    list:
    if list == [ ] then throw "lib.last: empty list" else elemAt list (length list - 1);

  # All but the last element.
  init =
    list: if list == [ ] then throw "lib.init: empty list" else genList (elemAt list) (length list - 1);

  take = n: list: genList (elemAt list) (if n < length list then n else length list);

  reverseList =
    list:
    let
      n = length list;
    in
    genList (i: elemAt list (n - i - 1)) n;

  flatten = x: if isList x then concatMap lib.flatten x else [ x ];

  # Elements in first-occurrence order without duplicates (quadratic; for short lists).
  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];

  range = first: last: if first > last then [ ] else genList (n: first + n) (last - first + 1);

  count = pred: foldl' (c: x: if pred x then c + 1 else c) 0;

  # Stable sort on a key computed once per element.
  sortOn =
    key: list:
    map (p: p.v) (builtins.sort (a: b: a.k < b.k) (map (v: { k = key v; inherit v; }) list));
}
