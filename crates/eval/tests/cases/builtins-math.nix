with builtins; [ (add 1 2) (sub 5 7) (mul 3 4) (div 7 2) (div 7.0 2) (lessThan 1 2) (bitAnd 12 10) (bitOr 12 10) (bitXor 12 10) (ceil 1.2) (floor (-1.2)) (1.0 / 3) 0.00001 123456789012.0 ]
