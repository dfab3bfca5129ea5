//! Operation codes of the worker protocol.
//!
//! Each request starts with one of these as a `u64`. Only the operations this
//! client implements are listed with their request/reply shapes in
//! [`super::client`]; the rest are named here so that adding one (BuildPaths,
//! QueryMissing, ...) is a matter of encoding its arguments.

/// A worker protocol operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Op {
    IsValidPath = 1,
    QueryReferrers = 6,
    AddToStore = 7,
    BuildPaths = 9,
    EnsurePath = 10,
    AddTempRoot = 11,
    AddIndirectRoot = 12,
    FindRoots = 14,
    SetOptions = 19,
    CollectGarbage = 20,
    QuerySubstitutablePathInfo = 21,
    QueryAllValidPaths = 23,
    QueryPathInfo = 26,
    QueryPathFromHashPart = 29,
    QuerySubstitutablePathInfos = 30,
    QueryValidPaths = 31,
    QuerySubstitutablePaths = 32,
    QueryValidDerivers = 33,
    OptimiseStore = 34,
    VerifyStore = 35,
    BuildDerivation = 36,
    AddSignatures = 37,
    NarFromPath = 38,
    AddToStoreNar = 39,
    QueryMissing = 40,
    QueryDerivationOutputMap = 41,
    RegisterDrvOutput = 42,
    QueryRealisation = 43,
    AddMultipleToStore = 44,
    AddBuildLog = 45,
    BuildPathsWithResults = 46,
    AddPermRoot = 47,
}

impl Op {
    pub const fn code(self) -> u64 {
        self as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_nix() {
        // worker-protocol.hh: wopIsValidPath = 1, wopQueryPathInfo = 26,
        // wopAddToStoreNar = 39, wopAddMultipleToStore = 44.
        assert_eq!(Op::IsValidPath.code(), 1);
        assert_eq!(Op::QueryPathInfo.code(), 26);
        assert_eq!(Op::QueryValidPaths.code(), 31);
        assert_eq!(Op::AddToStoreNar.code(), 39);
        assert_eq!(Op::AddMultipleToStore.code(), 44);
        assert_eq!(Op::AddPermRoot.code(), 47);
    }
}
