//! The derivations and text files an evaluation has "written" to the store.
//!
//! Design: one [`Registry`] per evaluation, behind a mutex, holds
//! - the memoised modulo hashes ([`ModuloHashCache`], Nix's `drvHashes`):
//!   `derivationStrict` registers each derivation after its inputs, so an
//!   instantiation only looks up its direct inputs;
//! - every instantiated derivation by `.drv` path, in creation order, kept
//!   compactly as its `.drv` bytes and output names (a parsed [`Derivation`]
//!   is a tree of maps, several KB each; memory is what evaluation pays for
//!   in page faults): it is parsed again only for `--show-derivation`,
//!   `--json`, the manifest and `=drv` closures;
//! - the references of every text file (`builtins.toFile`).
//!
//! Inputs that this evaluation did not create (a `.drv` named through
//! `builtins.storePath` or `appendContext`) are read from the real store
//! directory by the injected [`DrvReader`], so the registry itself does no
//! I/O and tests run without a store.
//!
//! Invariant: a `.drv` path maps to exactly one derivation; instantiating the
//! same derivation twice (two threads forcing the same thunk) is harmless,
//! both get the same path.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use ndeploy_store::derivation::{Derivation, ModuloHashCache};
use ndeploy_store::store_path::{StoreDir, StorePath, StorePathMap};

use super::StoreError;

/// Reads a `.drv` file that is not in the registry (from the real store).
pub type DrvReader = dyn Fn(&StoreDir, &StorePath) -> Result<Derivation, StoreError> + Send + Sync;

/// A derivation just instantiated.
pub struct Registered {
    pub drv_path: StorePath,
    /// The derivation with its output paths filled in.
    pub drv: Derivation,
    /// The `.drv` file's bytes.
    pub aterm: Arc<[u8]>,
}

/// What is kept of an instantiated derivation.
struct Kept {
    aterm: Arc<[u8]>,
    outputs: Box<[Box<str>]>,
}

#[derive(Default)]
struct Inner {
    cache: ModuloHashCache,
    drvs: StorePathMap<Kept>,
    order: Vec<StorePath>,
    texts: StorePathMap<Vec<StorePath>>,
}

pub struct Registry {
    dir: StoreDir,
    inner: Mutex<Inner>,
    read: Box<DrvReader>,
}

impl Registry {
    pub fn new(dir: StoreDir, read: Box<DrvReader>) -> Registry {
        Registry { dir, inner: Mutex::new(Inner::default()), read }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fill in `drv`'s output paths, compute its `.drv` path and record it
    /// (Nix's `derivationStrict` after the attributes are processed).
    /// `drv`'s outputs must be as `derivationStrict` leaves them before
    /// hashing: deferred with empty env vars, or one fixed output.
    pub fn instantiate(&self, mut drv: Derivation) -> Result<Registered, StoreError> {
        let mut inner = self.lock();
        self.check_inputs(&mut inner, &drv)?;
        let done = inner.cache.instantiate(&self.dir, &mut drv)?;
        let aterm: Arc<[u8]> = done.aterm.into();
        if let std::collections::hash_map::Entry::Vacant(e) = inner.drvs.entry(done.drv_path.clone()) {
            let outputs = drv.outputs.keys().map(|o| o.as_str().into()).collect();
            e.insert(Kept { aterm: aterm.clone(), outputs });
            inner.order.push(done.drv_path.clone());
        }
        Ok(Registered { drv_path: done.drv_path, drv, aterm })
    }

    /// Every input derivation is known (those from outside this evaluation
    /// are read from the store and hashed) and has the outputs used (Nix's
    /// "no hash for output").
    fn check_inputs(&self, inner: &mut Inner, drv: &Derivation) -> Result<(), StoreError> {
        for (input, outputs) in &drv.input_drvs {
            // Ours: in the modulo hash cache since it was instantiated.
            let missing = match inner.drvs.get(input) {
                Some(k) => outputs.iter().find(|o| !k.outputs.iter().any(|x| **x == ***o)),
                None => {
                    if inner.cache.get(input).is_none() {
                        let read = |p: &StorePath| (self.read)(&self.dir, p);
                        inner.cache.hash_path(&self.dir, input, read)?;
                    }
                    let read = (self.read)(&self.dir, input)?;
                    outputs.iter().find(|o| !read.outputs.contains_key(*o))
                }
            };
            if let Some(o) = missing {
                return Err(StoreError::NoSuchOutput { output: o.clone(), drv: drv.name.clone() });
            }
        }
        Ok(())
    }

    /// Record a text file's references (`builtins.toFile`).
    pub fn add_text(&self, path: StorePath, refs: Vec<StorePath>) {
        self.lock().texts.insert(path, refs);
    }

    /// A derivation of this evaluation (parsed again from its `.drv`
    /// bytes), or read from the store.
    pub fn derivation(&self, drv_path: &StorePath) -> Result<Derivation, StoreError> {
        let kept = self.lock().drvs.get(drv_path).map(|k| k.aterm.clone());
        match kept {
            Some(aterm) => Derivation::parse_drv_file(&self.dir, drv_path, &aterm)
                .map_err(|e| StoreError::Other(format!("parsing derivation '{drv_path}': {e}"))),
            None => (self.read)(&self.dir, drv_path),
        }
    }

    /// The known references of a store path: a derivation's inputs, a text
    /// file's references; other paths (sources) have none.
    fn references(&self, path: &StorePath) -> Result<Vec<StorePath>, StoreError> {
        Ok(self.known_references(path)?.unwrap_or_default())
    }

    /// The references of a text file of this evaluation or of a derivation
    /// (of this evaluation, or read from the store); `None` for any other
    /// path, whose references only the store's database knows.
    pub fn known_references(&self, path: &StorePath) -> Result<Option<Vec<StorePath>>, StoreError> {
        if let Some(r) = self.lock().texts.get(path) {
            return Ok(Some(r.clone()));
        }
        if path.is_derivation() {
            return Ok(Some(self.derivation(path)?.references().cloned().collect()));
        }
        Ok(None)
    }

    /// Nix's `computeFSClosure(path)`, with each derivation's output names:
    /// what a `=drv` context element adds to a derivation's inputs.
    pub fn closure_with_outputs(
        &self,
        root: &StorePath,
    ) -> Result<BTreeMap<StorePath, Option<BTreeSet<String>>>, StoreError> {
        let mut out: BTreeMap<StorePath, Option<BTreeSet<String>>> = BTreeMap::new();
        let mut todo = vec![root.clone()];
        while let Some(p) = todo.pop() {
            if out.contains_key(&p) {
                continue;
            }
            let outputs =
                if p.is_derivation() { Some(self.derivation(&p)?.outputs.keys().cloned().collect()) } else { None };
            todo.extend(self.references(&p)?.into_iter().filter(|r| !out.contains_key(r)));
            out.insert(p, outputs);
        }
        Ok(out)
    }

    /// Every derivation of this evaluation, in creation order.
    pub fn derivations(&self) -> Result<Vec<(StorePath, Derivation)>, StoreError> {
        let order = self.lock().order.clone();
        order.into_iter().map(|p| Ok((p.clone(), self.derivation(&p)?))).collect()
    }

    /// Every text file of this evaluation with its references, by path.
    pub fn texts(&self) -> BTreeMap<StorePath, Vec<StorePath>> {
        self.lock().texts.iter().map(|(p, r)| (p.clone(), r.clone())).collect()
    }

    pub fn len(&self) -> usize {
        self.lock().drvs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndeploy_store::derivation::DerivationOutput;

    fn no_store() -> Box<DrvReader> {
        Box::new(|_, p| Err(StoreError::Other(format!("derivation '{p}' is not in the test store"))))
    }

    fn drv(name: &str, inputs: &[(&StorePath, &str)]) -> Derivation {
        let mut d = Derivation {
            name: name.into(),
            system: "x86_64-linux".into(),
            builder: "/bin/sh".into(),
            args: vec!["-c".into(), "echo hi > $out".into()],
            ..Default::default()
        };
        d.outputs.insert("out".into(), DerivationOutput::Deferred);
        for (k, v) in [("builder", "/bin/sh"), ("name", name), ("system", "x86_64-linux"), ("out", "")] {
            d.env.insert(k.into(), v.into());
        }
        for (p, o) in inputs {
            d.input_drvs.entry((*p).clone()).or_default().insert((*o).to_string());
        }
        d
    }

    #[test]
    fn threads_instantiating_the_same_derivations_agree() {
        let r = Registry::new(StoreDir::default(), no_store());
        let paths: Vec<Vec<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let mut prev: Option<StorePath> = None;
                        let mut out = Vec::new();
                        for i in 0..50 {
                            let inputs: Vec<(&StorePath, &str)> = prev.iter().map(|p| (p, "out")).collect();
                            let done = r.instantiate(drv(&format!("d{i}"), &inputs)).unwrap();
                            out.push(done.drv_path.to_string());
                            prev = Some(done.drv_path);
                        }
                        out
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(paths.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(r.len(), 50);
        assert_eq!(r.derivations().unwrap().len(), 50);
    }

    #[test]
    fn instantiates_in_order_and_closes_over_inputs() {
        let r = Registry::new(StoreDir::default(), no_store());
        let a = r.instantiate(drv("hello", &[])).unwrap();
        // As nix-instantiate computes it (see ndeploy_store::derivation).
        assert_eq!(a.drv_path.to_string(), "76w21n1f03fs5kw8fnffphx7qrqffw6r-hello.drv");
        let b = r.instantiate(drv("b", &[(&a.drv_path, "out")])).unwrap();
        let c = r.closure_with_outputs(&b.drv_path).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[&a.drv_path].as_ref().unwrap().iter().collect::<Vec<_>>(), ["out"]);
        assert_eq!(r.derivations().unwrap().len(), 2);
        assert_eq!(r.derivation(&b.drv_path).unwrap(), b.drv);
        let err = r.instantiate(drv("c", &[(&a.drv_path, "dev")])).err().unwrap();
        assert_eq!(err.to_string(), "no hash for output 'dev' of derivation 'c'");
        let missing = StorePath::from_base_name("00000000000000000000000000000000-x.drv").unwrap();
        assert!(
            r.instantiate(drv("d", &[(&missing, "out")])).err().unwrap().to_string().contains("not in the test store")
        );
    }
}
