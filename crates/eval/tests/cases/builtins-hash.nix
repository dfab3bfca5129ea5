with builtins; [ (hashString "md5" "abc") (hashString "sha1" "abc") (hashString "sha256" "abc") (hashString "sha512" "") ]
