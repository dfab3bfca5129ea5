let x = "world"; in [ "hello ${x}" "a\nb\t\"c\"\\" ''
  indented ${x}
    more
  ''' quotes ''${x} '' "$${x}" ]
