1.5 + true
