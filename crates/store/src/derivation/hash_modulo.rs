//! `hashDerivationModulo`: the hash that identifies a derivation "modulo"
//! fixed-output derivations, from which output paths are computed.
//!
//! - A fixed-output derivation hashes to
//!   `sha256("fixed:out:<r:?><algo>:<base16 hash>:<output path>")`, so its
//!   dependents do not change when only how it fetches changes.
//! - Any other derivation hashes to the sha256 of its ATerm in which every
//!   input derivation path is replaced by the base16 of that input's (unmasked)
//!   modulo hash, re-sorted by that key (inputs with equal hashes merge their
//!   output sets). With `mask`, output paths and output env vars print empty:
//!   that is the hash used while computing a derivation's own output paths.
//! - Impure derivations hash to `sha256("impure")`.
//!
//! [`Derivation::hash_modulo`] is pure: input hashes come from a lookup
//! closure. [`ModuloHashCache`] memoises hashes by `.drv` path and walks a DAG
//! of derivations read on demand with an explicit stack (no recursion, so deep
//! chains cannot overflow the stack), each derivation read and hashed once.

use std::collections::{BTreeSet, HashSet};

use super::aterm::{self, BufferedHasher, Sink};
use super::{Derivation, DerivationError, DerivationKind, DerivationOutput, method_prefix};
use crate::hash::{Base16, Hash, HashAlgo, Hasher};
use crate::store_path::{StoreDir, StorePath, StorePathMap};

/// Nix's `DrvHash`: a modulo hash, and whether the output paths of
/// derivations that depend on it are deferred (unknown until built), which is
/// so for floating content-addressed and impure derivations and, transitively,
/// for everything that depends on one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DrvHash {
    pub hash: Hash,
    pub deferred: bool,
}

/// A plain hash: a regular (not deferred) one.
impl From<Hash> for DrvHash {
    fn from(hash: Hash) -> DrvHash {
        DrvHash { hash, deferred: false }
    }
}

impl Derivation {
    /// Nix's `hashDerivationModulo(drv, mask)`. `lookup` returns the unmasked
    /// modulo hash of an input derivation (a [`Hash`] or a [`DrvHash`]); it is
    /// called once per input.
    pub fn hash_modulo<E: From<DerivationError>, H: Into<DrvHash>>(
        &self,
        store_dir: &StoreDir,
        mask: bool,
        lookup: impl FnMut(&StorePath) -> Result<H, E>,
    ) -> Result<Hash, E> {
        Ok(self.drv_hash(store_dir, mask, lookup)?.hash)
    }

    /// [`Derivation::hash_modulo`], also telling whether output paths are deferred.
    pub fn drv_hash<E: From<DerivationError>, H: Into<DrvHash>>(
        &self,
        store_dir: &StoreDir,
        mask: bool,
        lookup: impl FnMut(&StorePath) -> Result<H, E>,
    ) -> Result<DrvHash, E> {
        let kind = self.kind()?;
        match kind {
            DerivationKind::Fixed => Ok(DrvHash { hash: self.fixed_hash(store_dir)?, deferred: false }),
            DerivationKind::Impure => Ok(DrvHash { hash: Hash::digest(HashAlgo::Sha256, b"impure"), deferred: true }),
            DerivationKind::InputAddressed { .. } | DerivationKind::Floating => {
                let mut lookup = lookup;
                let (inputs, deferred) = self.replaced_inputs(|p, _| lookup(p).map(Into::into))?;
                let hash = self.hash_with_replaced(store_dir, mask, &inputs)?;
                Ok(DrvHash { hash, deferred: deferred || kind == DerivationKind::Floating })
            }
        }
    }

    /// The printed ATerm list of the input derivations replaced by their
    /// modulo hashes (see [`aterm::write_replaced_inputs`]), and whether any
    /// input is deferred. Masked or not, a derivation's modulo ATerms share
    /// this list, so it is printed once.
    /// `lookup` gets each input with the outputs used.
    fn replaced_inputs<E>(
        &self,
        mut lookup: impl FnMut(&StorePath, &BTreeSet<String>) -> Result<DrvHash, E>,
    ) -> Result<(Vec<u8>, bool), E> {
        let mut deferred = false;
        let mut replaced: Vec<(Base16, &BTreeSet<String>)> = Vec::with_capacity(self.input_drvs.len());
        for (path, outputs) in &self.input_drvs {
            let h = lookup(path, outputs)?;
            deferred |= h.deferred;
            replaced.push((h.hash.base16(), outputs));
        }
        // Nix's map from hash to outputs: by hash, equal hashes (inputs
        // that differ only in how they fetch) merge their outputs.
        replaced.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut out = Vec::with_capacity(2 + replaced.len() * 80);
        out.put(b"[");
        let mut rest = replaced.as_slice();
        while let Some((hash, outputs)) = rest.first() {
            let same = rest.iter().take_while(|(h, _)| h.as_bytes() == hash.as_bytes()).count();
            if rest.len() < replaced.len() {
                out.put(b",");
            }
            let (group, tail) = rest.split_at(same);
            if same == 1 {
                aterm::write_replaced_input(hash.as_str(), outputs.iter().map(String::as_str), &mut out);
            } else {
                let merged: BTreeSet<&str> = group.iter().flat_map(|(_, o)| o.iter().map(String::as_str)).collect();
                aterm::write_replaced_input(hash.as_str(), merged, &mut out);
            }
            rest = tail;
        }
        out.put(b"]");
        Ok((out, deferred))
    }

    /// The sha256 of the ATerm with the input derivations list `inputs`
    /// (printed by [`Derivation::replaced_inputs`]), masked or not.
    fn hash_with_replaced(&self, store_dir: &StoreDir, mask: bool, inputs: &[u8]) -> Result<Hash, DerivationError> {
        let mut hasher = BufferedHasher::new(HashAlgo::Sha256);
        aterm::write_with_printed_inputs(self, store_dir, mask, inputs, &mut hasher)?;
        Ok(hasher.finish())
    }

    /// The modulo hash of a fixed-output derivation (its single output "out").
    fn fixed_hash(&self, store_dir: &StoreDir) -> Result<Hash, DerivationError> {
        let mut hasher = Hasher::new(HashAlgo::Sha256);
        for (name, output) in &self.outputs {
            if let DerivationOutput::CAFixed { method, hash } = output
                && let Some(path) = output.path(store_dir, &self.name, name)?
            {
                let s = format!(
                    "fixed:out:{}{}:{}:{}",
                    method_prefix(*method),
                    hash.algo(),
                    hash.to_base16(),
                    store_dir.display(&path)
                );
                hasher.update(s.as_bytes());
            }
        }
        Ok(hasher.finish())
    }
}

/// The result of [`ModuloHashCache::instantiate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instantiated {
    pub drv_path: StorePath,
    /// The `.drv` file's contents.
    pub aterm: Vec<u8>,
    /// The derivation's unmasked modulo hash (now memoised).
    pub modulo_hash: DrvHash,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: DrvHash,
    /// Fixed-output derivations have only an "out" output to depend on.
    fixed: bool,
}

/// Memoised unmasked modulo hashes of `.drv` paths (Nix's `drvHashes`).
#[derive(Debug, Default, Clone)]
pub struct ModuloHashCache {
    entries: StorePathMap<Entry>,
}

/// One derivation on the walk's stack: its inputs still to visit.
struct Frame {
    path: StorePath,
    drv: Derivation,
    pending: Vec<StorePath>,
}

impl ModuloHashCache {
    pub fn new() -> ModuloHashCache {
        ModuloHashCache::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The memoised hash of `drv_path`, if computed.
    pub fn get(&self, drv_path: &StorePath) -> Option<Hash> {
        self.entries.get(drv_path).map(|e| e.hash.hash)
    }

    /// Record `drv` (whose `.drv` path is `drv_path`): computes its unmasked
    /// modulo hash from the memoised hashes of its inputs, which must all be
    /// known already (true when derivations are added in creation order).
    pub fn add(&mut self, store_dir: &StoreDir, drv_path: StorePath, drv: &Derivation) -> Result<DrvHash, DerivationError> {
        let hash = self.hash_known(store_dir, drv, false)?;
        let fixed = drv.kind()? == DerivationKind::Fixed;
        self.entries.insert(drv_path, Entry { hash, fixed });
        Ok(hash)
    }

    /// What `derivationStrict` does once a derivation's attributes are known:
    /// fill in its output paths (inputs must be in the cache), print its
    /// ATerm, compute its `.drv` path and memoise its modulo hash. The caller
    /// writes `aterm` to the store (a text file referencing the inputs).
    pub fn instantiate(&mut self, store_dir: &StoreDir, drv: &mut Derivation) -> Result<Instantiated, DerivationError> {
        let kind = drv.kind()?;
        // The inputs list of the modulo ATerms, masked (for the output
        // paths) and not (the memoised hash), printed once for both; the
        // inputs are checked as they are looked up.
        let replaced = match kind {
            DerivationKind::InputAddressed { .. } | DerivationKind::Floating if !drv.input_drvs.is_empty() => {
                Some(drv.replaced_inputs(|p, outputs| self.checked_input(&drv.name, p, outputs))?)
            }
            _ => {
                self.check_inputs(drv)?;
                None
            }
        };
        if let (DerivationKind::InputAddressed { .. }, Some((inputs, deferred))) = (kind, &replaced) {
            let hash = drv.hash_with_replaced(store_dir, true, inputs)?;
            drv.set_input_addressed_paths(store_dir, DrvHash { hash, deferred: *deferred })?;
        } else {
            drv.compute_output_paths(store_dir, |p| self.lookup(p))?;
        }
        let mut aterm = Vec::with_capacity(2048);
        let (start, end) = aterm::write_with_inputs_span(drv, store_dir, &mut aterm)?;
        let aterm_hash = Hash::digest(HashAlgo::Sha256, &aterm);
        let drv_path = drv.drv_path_of_hash(store_dir, &aterm_hash)?;
        let floating = kind == DerivationKind::Floating;
        let modulo_hash = match (kind, replaced) {
            // Else it is the ATerm with the input derivations list replaced.
            (_, Some((inputs, deferred))) => {
                let mut hasher = Hasher::new(HashAlgo::Sha256);
                hasher.update(aterm.get(..start).unwrap_or_default());
                hasher.update(&inputs);
                hasher.update(aterm.get(end..).unwrap_or_default());
                DrvHash { hash: hasher.finish(), deferred: deferred || floating }
            }
            // Without input derivations the modulo ATerm is the ATerm itself.
            (DerivationKind::InputAddressed { .. } | DerivationKind::Floating, None) => {
                DrvHash { hash: aterm_hash, deferred: floating }
            }
            _ => drv.drv_hash(store_dir, false, |p| self.lookup(p))?,
        };
        let fixed = kind == DerivationKind::Fixed;
        self.entries.insert(drv_path.clone(), Entry { hash: modulo_hash, fixed });
        Ok(Instantiated { drv_path, aterm, modulo_hash })
    }

    /// `drv.hash_modulo(mask)` with inputs from this cache only; an input not
    /// in the cache is an error.
    pub fn hash_known(&self, store_dir: &StoreDir, drv: &Derivation, mask: bool) -> Result<DrvHash, DerivationError> {
        self.check_inputs(drv)?;
        drv.drv_hash(store_dir, mask, |p| self.lookup(p))
    }

    /// The memoised hash of `drv_path`, or [`DerivationError::UnknownInput`]:
    /// a lookup for [`Derivation::hash_modulo`] and [`Derivation::compute_output_paths`].
    pub fn lookup(&self, drv_path: &StorePath) -> Result<DrvHash, DerivationError> {
        self.entries.get(drv_path).map(|e| e.hash).ok_or_else(|| DerivationError::UnknownInput(drv_path.to_string()))
    }

    /// Check that every input of `drv` is known and that `drv` uses only the
    /// "out" output of fixed-output inputs (Nix: "no hash for output").
    pub fn check_inputs(&self, drv: &Derivation) -> Result<(), DerivationError> {
        for (input, outputs) in &drv.input_drvs {
            self.checked_input(&drv.name, input, outputs)?;
        }
        Ok(())
    }

    /// The memoised hash of input `input` of derivation `drv_name`, which
    /// uses its `outputs` (only "out" of a fixed-output derivation).
    fn checked_input(&self, drv_name: &str, input: &StorePath, outputs: &BTreeSet<String>) -> Result<DrvHash, DerivationError> {
        let entry = self.entries.get(input).ok_or_else(|| DerivationError::UnknownInput(input.to_string()))?;
        if let Some(output) = outputs.iter().find(|o| entry.fixed && *o != "out") {
            return Err(DerivationError::NoSuchOutput {
                drv: drv_name.to_owned(),
                input: input.to_string(),
                output: output.clone(),
            });
        }
        Ok(entry.hash)
    }

    /// `drv.hash_modulo(mask)`, first computing (and memoising) the hashes of
    /// all derivations it depends on, read with `read` as needed.
    pub fn hash_modulo<E: From<DerivationError>>(
        &mut self,
        store_dir: &StoreDir,
        drv: &Derivation,
        mask: bool,
        mut read: impl FnMut(&StorePath) -> Result<Derivation, E>,
    ) -> Result<Hash, E> {
        for input in drv.input_drvs.keys() {
            self.hash_path(store_dir, input, &mut read)?;
        }
        Ok(self.hash_known(store_dir, drv, mask)?.hash)
    }

    /// The unmasked modulo hash of the derivation at `drv_path`, reading it
    /// and everything it depends on (not yet memoised) with `read`.
    pub fn hash_path<E: From<DerivationError>>(
        &mut self,
        store_dir: &StoreDir,
        drv_path: &StorePath,
        mut read: impl FnMut(&StorePath) -> Result<Derivation, E>,
    ) -> Result<Hash, E> {
        if let Some(h) = self.get(drv_path) {
            return Ok(h);
        }
        let mut on_stack: HashSet<StorePath> = HashSet::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut push = |path: &StorePath, stack: &mut Vec<Frame>, on_stack: &mut HashSet<StorePath>, this: &Self| {
            let drv = read(path)?;
            let pending = drv.input_drvs.keys().filter(|p| !this.entries.contains_key(*p)).cloned().collect();
            on_stack.insert(path.clone());
            stack.push(Frame { path: path.clone(), drv, pending });
            Ok::<(), E>(())
        };
        push(drv_path, &mut stack, &mut on_stack, self)?;
        while let Some(frame) = stack.last_mut() {
            if let Some(next) = frame.pending.pop() {
                if self.entries.contains_key(&next) {
                    continue;
                }
                if on_stack.contains(&next) {
                    return Err(DerivationError::Cycle(next.to_string()).into());
                }
                push(&next, &mut stack, &mut on_stack, self)?;
                continue;
            }
            let Some(frame) = stack.pop() else { break };
            on_stack.remove(&frame.path);
            self.add(store_dir, frame.path, &frame.drv)?;
        }
        Ok(self.lookup(drv_path)?.hash)
    }
}
