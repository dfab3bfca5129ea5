//! Store derivations (`.drv` files): the [`Derivation`] type, its ATerm form,
//! `hashDerivationModulo`, and the paths computed from them.
//!
//! Design, following C++ Nix 2.8 exactly:
//! - A [`Derivation`] holds store paths as dir-independent [`StorePath`]s; a
//!   [`StoreDir`] is passed wherever a path is printed, parsed or computed.
//! - All maps and sets are `BTreeMap`/`BTreeSet` over `String`s, whose order is
//!   bytewise (UTF-8 order), i.e. `std::map<std::string>` order. `StorePath`'s
//!   own `Ord` is the order of the printed strings, so store path sets print
//!   in Nix's order as they are.
//! - A fixed output stores only its method and hash: its path is always
//!   computed from the derivation name (as Nix does), so it cannot disagree.
//! - The derivation `name` is not part of the ATerm: it comes from the `.drv`
//!   file name or, failing that, from the `name` environment variable.
//! - Everything here is pure; reading other derivations is injected as a
//!   closure (see [`hash_modulo`]).
//!
//! Submodules: [`aterm`] (print and parse), [`hash_modulo`] (modulo hashes,
//! memoised over a DAG), [`json`] (`nix show-derivation`), [`verify`]
//! (`show-derivation --check`).
//!
//! What `derivationStrict` does, in creation order (inputs first):
//!
//! ```
//! use ndeploy_store::derivation::{Derivation, DerivationOutput, ModuloHashCache};
//! use ndeploy_store::store_path::StoreDir;
//!
//! let dir = StoreDir::default();
//! let mut cache = ModuloHashCache::new(); // one per evaluation
//! let mut drv = Derivation {
//!     name: "hello".into(),
//!     system: "x86_64-linux".into(),
//!     builder: "/bin/sh".into(),
//!     args: vec!["-c".into(), "echo hi > $out".into()],
//!     ..Default::default()
//! };
//! drv.outputs.insert("out".into(), DerivationOutput::Deferred);
//! for (k, v) in [("builder", "/bin/sh"), ("name", "hello"), ("system", "x86_64-linux"), ("out", "")] {
//!     drv.env.insert(k.into(), v.into());
//! }
//! let done = cache.instantiate(&dir, &mut drv).unwrap();
//! // As `nix-instantiate` computes them:
//! assert_eq!(dir.display(&done.drv_path), "/nix/store/76w21n1f03fs5kw8fnffphx7qrqffw6r-hello.drv");
//! assert_eq!(drv.env["out"], "/nix/store/mjs27ix6ig2bkbi3s3sm470vrv4lf7ic-hello");
//! assert!(done.aterm.starts_with(br#"Derive([("out","/nix/store/mjs27ix6ig2bkbi3s3sm470vrv4lf7ic-hello","","")]"#));
//! ```

pub mod aterm;
pub mod hash_modulo;
pub mod json;
pub mod verify;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::hash::{Hash, HashAlgo};
use crate::store_path::{FileIngestionMethod, StoreDir, StorePath, StorePathError, output_path_name};

pub use aterm::ParseError;
pub use hash_modulo::{DrvHash, Instantiated, ModuloHashCache};

/// The extension of derivation files.
pub const DRV_EXTENSION: &str = ".drv";

/// Errors about a derivation's meaning (as opposed to its syntax).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DerivationError {
    #[error("derivation '{0}' has no outputs")]
    NoOutputs(String),
    #[error("derivation '{0}' mixes output types (input-addressed, fixed, floating, deferred, impure)")]
    MixedOutputTypes(String),
    #[error("derivation '{0}' has more than one fixed output")]
    MultipleFixedOutputs(String),
    #[error("the fixed output of derivation '{drv}' is named '{output}', not \"out\"")]
    FixedOutputNotOut { drv: String, output: String },
    #[error("floating content-addressed outputs of derivation '{0}' use different hash algorithms")]
    MixedFloatingAlgos(String),
    #[error("derivation name '{0}' must not end in '.drv'")]
    NameEndsInDrv(String),
    #[error("derivation '{drv}' depends on output '{output}' of fixed-output derivation '{input}', which has only \"out\"")]
    NoSuchOutput { drv: String, input: String, output: String },
    #[error("input derivation '{0}' has no known modulo hash")]
    UnknownInput(String),
    #[error("derivation '{0}' depends on itself")]
    Cycle(String),
    #[error("could not serialise derivation as JSON: {0}")]
    Json(String),
    #[error("invalid store path in derivation: {0}")]
    StorePath(#[from] StorePathError),
}

/// One output of a derivation, as Nix 2.8 models it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerivationOutput {
    /// The usual case: the path is computed from the derivation's modulo hash.
    InputAddressed { path: StorePath },
    /// A fixed-output (content-addressed, hash known in advance) output; the
    /// path is computed from the hash and the derivation name.
    CAFixed { method: FileIngestionMethod, hash: Hash },
    /// A floating content-addressed output (`__contentAddressed = true`):
    /// the path is known only after the build.
    CAFloating { method: FileIngestionMethod, algo: HashAlgo },
    /// An input-addressed output whose path is not yet known (printed as "").
    Deferred,
    /// An impure output (`__impure = true`), printed with hash "impure".
    Impure { method: FileIngestionMethod, algo: HashAlgo },
}

/// What kind of derivation this is, derived from its outputs (Nix's `DerivationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerivationKind {
    /// All outputs input-addressed; `deferred` when their paths are still unknown.
    InputAddressed { deferred: bool },
    /// A single fixed output named "out".
    Fixed,
    /// Floating content-addressed outputs.
    Floating,
    /// Impure outputs.
    Impure,
}

/// A store derivation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Derivation {
    /// The derivation name (without `.drv`); not part of the ATerm.
    pub name: String,
    pub outputs: BTreeMap<String, DerivationOutput>,
    /// Input derivations and the outputs of each that are used.
    pub input_drvs: BTreeMap<StorePath, BTreeSet<String>>,
    /// Input sources (store paths that are not outputs of a derivation).
    pub input_srcs: BTreeSet<StorePath>,
    /// The platform (`system` attribute).
    pub system: String,
    pub builder: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// The derivation name of a `.drv` store path (`<hash>-hello.drv` → `hello`).
pub fn name_from_drv_path(drv_path: &StorePath) -> Option<&str> {
    drv_path.name().strip_suffix(DRV_EXTENSION).filter(|n| !n.is_empty())
}

/// Nix's `hashPlaceholder(output)` (`builtins.placeholder`): `/` and the nix32
/// of `sha256("nix-output:<output>")`, which the builder replaces with the
/// output's path once it is known.
pub fn hash_placeholder(output: &str) -> String {
    format!("/{}", Hash::digest(HashAlgo::Sha256, format!("nix-output:{output}")).to_nix32())
}

/// `r:` for recursive, nothing for flat: the prefix of `hashAlgo` fields.
pub fn method_prefix(method: FileIngestionMethod) -> &'static str {
    match method {
        FileIngestionMethod::Recursive => "r:",
        FileIngestionMethod::Flat => "",
    }
}

impl DerivationOutput {
    /// The `hashAlgo` field as printed (`r:sha256`, `sha1`, or "").
    pub fn hash_algo_field(&self) -> String {
        match self {
            DerivationOutput::CAFixed { method, hash } => format!("{}{}", method_prefix(*method), hash.algo()),
            DerivationOutput::CAFloating { method, algo } | DerivationOutput::Impure { method, algo } => {
                format!("{}{algo}", method_prefix(*method))
            }
            DerivationOutput::InputAddressed { .. } | DerivationOutput::Deferred => String::new(),
        }
    }

    /// The `hash` field as printed (base16 for fixed outputs, `impure`, or "").
    pub fn hash_field(&self) -> String {
        match self {
            DerivationOutput::CAFixed { hash, .. } => hash.to_base16(),
            DerivationOutput::Impure { .. } => "impure".to_owned(),
            _ => String::new(),
        }
    }

    /// The output's path if it is known before building.
    pub fn path(&self, store_dir: &StoreDir, drv_name: &str, output: &str) -> Result<Option<StorePath>, StorePathError> {
        match self {
            DerivationOutput::InputAddressed { path } => Ok(Some(path.clone())),
            DerivationOutput::CAFixed { method, hash } => {
                let name = output_path_name(drv_name, output);
                store_dir.make_fixed_output_path(*method, hash, &name, [], false).map(Some)
            }
            _ => Ok(None),
        }
    }
}

impl Derivation {
    /// The output paths (and output env vars) of an input-addressed
    /// derivation from its masked modulo hash `h` (deferred: all empty).
    fn set_input_addressed_paths(&mut self, store_dir: &StoreDir, h: DrvHash) -> Result<(), DerivationError> {
        let Derivation { name, outputs, env, .. } = self;
        for (output, o) in outputs.iter_mut() {
            let value = if h.deferred {
                // Depends on a floating or impure derivation: paths unknown.
                *o = DerivationOutput::Deferred;
                String::new()
            } else {
                let path = store_dir.make_output_path(output, &h.hash, name)?;
                let value = store_dir.display(&path);
                *o = DerivationOutput::InputAddressed { path };
                value
            };
            match env.get_mut(output) {
                Some(v) => *v = value,
                None => {
                    env.insert(output.clone(), value);
                }
            }
        }
        Ok(())
    }

    /// Parse an ATerm `.drv` file. `name` is the derivation name; when `None`
    /// it is taken from the `name` environment variable.
    pub fn parse(store_dir: &StoreDir, aterm: &[u8], name: Option<&str>) -> Result<Derivation, ParseError> {
        aterm::parse(store_dir, aterm, name)
    }

    /// Parse the `.drv` file whose store path is `drv_path`; its name comes from the path.
    pub fn parse_drv_file(store_dir: &StoreDir, drv_path: &StorePath, aterm: &[u8]) -> Result<Derivation, ParseError> {
        aterm::parse(store_dir, aterm, name_from_drv_path(drv_path))
    }

    /// The ATerm serialisation, byte-identical to what Nix writes.
    pub fn to_aterm(&self, store_dir: &StoreDir) -> Result<Vec<u8>, DerivationError> {
        let mut out = Vec::with_capacity(1024);
        aterm::write(self, store_dir, false, None, &mut out)?;
        Ok(out)
    }

    /// The kind of derivation, checked as Nix does (no mixing of output types).
    pub fn kind(&self) -> Result<DerivationKind, DerivationError> {
        let name = || self.name.clone();
        let mut counts = [0usize; 5];
        let mut floating_algo = None;
        for out in self.outputs.values() {
            let i = match out {
                DerivationOutput::InputAddressed { .. } => 0,
                DerivationOutput::CAFixed { .. } => 1,
                DerivationOutput::CAFloating { algo, .. } => {
                    if floating_algo.is_some_and(|a| a != *algo) {
                        return Err(DerivationError::MixedFloatingAlgos(name()));
                    }
                    floating_algo = Some(*algo);
                    2
                }
                DerivationOutput::Deferred => 3,
                DerivationOutput::Impure { .. } => 4,
            };
            counts[i] += 1;
        }
        match counts {
            [0, 0, 0, 0, 0] => Err(DerivationError::NoOutputs(name())),
            [_, 0, 0, 0, 0] => Ok(DerivationKind::InputAddressed { deferred: false }),
            [0, 1, 0, 0, 0] => match self.outputs.keys().next() {
                Some(o) if o == "out" => Ok(DerivationKind::Fixed),
                o => Err(DerivationError::FixedOutputNotOut { drv: name(), output: o.cloned().unwrap_or_default() }),
            },
            [0, _, 0, 0, 0] => Err(DerivationError::MultipleFixedOutputs(name())),
            [0, 0, _, 0, 0] => Ok(DerivationKind::Floating),
            [0, 0, 0, _, 0] => Ok(DerivationKind::InputAddressed { deferred: true }),
            [0, 0, 0, 0, _] => Ok(DerivationKind::Impure),
            _ => Err(DerivationError::MixedOutputTypes(name())),
        }
    }

    /// The store paths this `.drv` file references: input sources and input derivations.
    pub fn references(&self) -> impl Iterator<Item = &StorePath> {
        self.input_srcs.iter().chain(self.input_drvs.keys())
    }

    /// The store path of this derivation's `.drv` file (Nix's `writeDerivation`
    /// in read-only mode): a text path over the ATerm, referencing the inputs.
    pub fn drv_path(&self, store_dir: &StoreDir) -> Result<StorePath, DerivationError> {
        let aterm = self.to_aterm(store_dir)?;
        self.drv_path_of_aterm(store_dir, &aterm)
    }

    /// [`Derivation::drv_path`] for an ATerm already serialised (saves a print).
    pub fn drv_path_of_aterm(&self, store_dir: &StoreDir, aterm: &[u8]) -> Result<StorePath, DerivationError> {
        self.drv_path_of_hash(store_dir, &Hash::digest(HashAlgo::Sha256, aterm))
    }

    /// [`Derivation::drv_path`] from the sha256 of the ATerm.
    pub(crate) fn drv_path_of_hash(&self, store_dir: &StoreDir, aterm_hash: &Hash) -> Result<StorePath, DerivationError> {
        if self.name.ends_with(DRV_EXTENSION) {
            return Err(DerivationError::NameEndsInDrv(self.name.clone()));
        }
        let name = format!("{}{DRV_EXTENSION}", self.name);
        Ok(store_dir.make_text_path(&name, aterm_hash, self.references())?)
    }

    /// The path of output `output`, if known before building.
    pub fn output_path(&self, store_dir: &StoreDir, output: &str) -> Result<Option<StorePath>, DerivationError> {
        match self.outputs.get(output) {
            Some(o) => Ok(o.path(store_dir, &self.name, output)?),
            None => Ok(None),
        }
    }

    /// Fill in output paths and the environment variables named after the
    /// outputs, as `derivationStrict` does: fixed outputs from their hash,
    /// input-addressed (or deferred) outputs from the masked modulo hash, for
    /// which `lookup` supplies the (unmasked) modulo hash of each input
    /// derivation (a [`DrvHash`], or a [`Hash`] if none is deferred). When an
    /// input is deferred, the outputs become [`DerivationOutput::Deferred`]
    /// with empty env vars. Floating and impure outputs get no path; their env
    /// vars are set to [`hash_placeholder`]s.
    pub fn compute_output_paths<E: From<DerivationError>, H: Into<DrvHash>>(
        &mut self,
        store_dir: &StoreDir,
        lookup: impl FnMut(&StorePath) -> Result<H, E>,
    ) -> Result<(), E> {
        match self.kind()? {
            DerivationKind::Fixed => {
                if let Some(path) = self.output_path(store_dir, "out")? {
                    self.env.insert("out".to_owned(), store_dir.display(&path));
                }
            }
            DerivationKind::InputAddressed { .. } => {
                let h = self.drv_hash(store_dir, true, lookup)?;
                self.set_input_addressed_paths(store_dir, h)?;
            }
            DerivationKind::Floating | DerivationKind::Impure => {
                for output in self.outputs.keys() {
                    self.env.insert(output.clone(), hash_placeholder(output));
                }
            }
        }
        Ok(())
    }
}
