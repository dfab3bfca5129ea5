builtins.filterSource (p: t: true) /nonexistent-ndeploy-case/src
