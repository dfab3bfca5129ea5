//! ndeploy-store: the Nix formats and store access that ndeploy is built on.
//!
//! Every module is a pure implementation of one Nix format, tested against
//! C++ Nix's output; I/O lives at the edges (`nar` streams over `Read`/`Write`,
//! the daemon client over any async byte stream).

pub mod hash;
pub mod nar;
pub mod nixbase32;
pub mod store_path;
pub mod content_address;
pub mod derivation;
pub mod drv_name;
pub mod narinfo;
pub mod path_info;
pub mod signature;
pub mod daemon;
#[cfg(test)]
mod test_rng;
