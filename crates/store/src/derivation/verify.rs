//! Checking a `.drv` file against what Nix would have written
//! (`ndeploy store show-derivation --check`).
//!
//! A derivation is consistent when (1) printing the parsed derivation gives
//! back the file's exact bytes, (2) its `.drv` store path recomputed from
//! those bytes equals the file's name (when the file is a store path), and
//! (3) every output path, and the environment variable named after each
//! output, equals the one recomputed via `hashDerivationModulo` (or, for
//! floating and impure outputs, no path and a hash placeholder). Input
//! derivations are read through an injected closure and memoised in a
//! [`ModuloHashCache`], so checking many derivations shares the work.

use thiserror::Error;

use super::{Derivation, DerivationError, DerivationKind, ModuloHashCache};
use crate::store_path::{StoreDir, StorePath};

/// One inconsistency found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Mismatch {
    #[error("the file is not in Nix's canonical form: re-serialising it differs from byte {offset} on")]
    NotCanonical { offset: usize },
    #[error("the file's contents hash to drv path '{computed}', but it is named '{found}'")]
    DrvPath { computed: String, found: String },
    #[error("output '{output}' should be '{computed}', but the derivation says '{found}'")]
    OutputPath { output: String, computed: String, found: String },
    #[error("environment variable '{output}' should be '{computed}', but the derivation says '{found}'")]
    OutputEnv { output: String, computed: String, found: String },
}

/// The result of [`verify`]: the recomputed `.drv` path and any mismatches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub drv_path: StorePath,
    pub mismatches: Vec<Mismatch>,
}

/// Check `drv`, parsed from `aterm`; `file` is the file's store path when it
/// lies in the store. `read` reads input derivations (for modulo hashes).
pub fn verify<E: From<DerivationError>>(
    store_dir: &StoreDir,
    drv: &Derivation,
    aterm: &[u8],
    file: Option<&StorePath>,
    cache: &mut ModuloHashCache,
    mut read: impl FnMut(&StorePath) -> Result<Derivation, E>,
) -> Result<Verification, E> {
    let mut mismatches = Vec::new();
    let printed = drv.to_aterm(store_dir)?;
    if printed != aterm {
        let offset = printed.iter().zip(aterm).take_while(|(a, b)| a == b).count();
        mismatches.push(Mismatch::NotCanonical { offset });
    }
    let drv_path = drv.drv_path_of_aterm(store_dir, aterm)?;
    if let Some(file) = file.filter(|f| **f != drv_path) {
        mismatches.push(Mismatch::DrvPath { computed: store_dir.display(&drv_path), found: store_dir.display(file) });
    }

    if let DerivationKind::InputAddressed { .. } = drv.kind()? {
        for input in drv.input_drvs.keys() {
            cache.hash_path(store_dir, input, &mut read)?;
        }
        cache.check_inputs(drv)?;
    }
    let mut recomputed = drv.clone();
    recomputed.compute_output_paths(store_dir, |p| cache.lookup(p))?;
    for output in drv.outputs.keys() {
        let show = |d: &Derivation| -> Result<String, DerivationError> {
            Ok(d.output_path(store_dir, output)?.map(|p| store_dir.display(&p)).unwrap_or_default())
        };
        let (computed, found) = (show(&recomputed)?, show(drv)?);
        if computed != found {
            mismatches.push(Mismatch::OutputPath { output: output.clone(), computed, found });
        }
        let env = |d: &Derivation| d.env.get(output).cloned().unwrap_or_default();
        let (computed, found) = (env(&recomputed), env(drv));
        if computed != found {
            mismatches.push(Mismatch::OutputEnv { output: output.clone(), computed, found });
        }
    }
    Ok(Verification { drv_path, mismatches })
}
