null + "a"
