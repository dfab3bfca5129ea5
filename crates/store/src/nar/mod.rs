//! NAR ("Nix ARchive"): Nix's canonical serialisation of a file system object.
//!
//! A NAR is a sequence of length-prefixed strings. Each string is a
//! little-endian `u64` length, the bytes, then zero padding to a multiple of 8.
//! File contents are written the same way but streamed (the size is known up
//! front). The grammar, with `"x"` standing for such a string:
//!
//! ```text
//! nar       = "nix-archive-1" node
//! node      = "(" "type" body ")"
//! body      = "regular" ["executable" ""] "contents" <contents>
//!           | "symlink" "target" <target>
//!           | "directory" entry*
//! entry     = "entry" "(" "name" <name> "node" node ")"
//! ```
//!
//! Directory entries are sorted bytewise by name, and names are never empty,
//! `.`, `..`, nor contain `/` or NUL. Because of this every tree has exactly one
//! NAR, which is what makes NAR hashes content addresses.
//!
//! Submodules:
//! * [`encoder`]: a low-level streaming [`NarEncoder`] that refuses to produce a
//!   non-canonical NAR (it checks names, order and nesting);
//! * [`dump`]: serialise a path of the local file system ([`dump_path`],
//!   filtered: [`dump_path_filtered`]);
//! * [`path_hash`]: [`hash_path`] (hash of the NAR), [`hash_file`] (flat) and
//!   the tee [`HashingWriter`]; [`background_hash`]: hashing on a second core;
//! * [`decoder`]: the grammar as a sans-I/O, non-recursive state machine
//!   ([`NarDecoder`]) fed byte slices, accepting only canonical NARs;
//! * [`parser`]: drives it from a blocking reader into a [`NarVisitor`], with
//!   [`validate`] as its no-op visitor;
//! * [`copy`]: forward one bare NAR from a (sync or async) stream, validated;
//! * [`mod@restore`]: recreate a tree from a NAR ([`restore()`]).
//!
//! Invariants: nothing here holds a whole file in memory (contents are streamed
//! through fixed-size buffers); the parser never allocates more than the caps
//! below for a string read from input, and never recurses, so hostile input
//! can neither exhaust memory nor overflow the stack.

pub mod background_hash;
pub mod copy;
pub mod decoder;
pub mod dump;
pub mod encoder;
pub mod parser;
pub mod path_hash;
pub mod restore;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod test_util;

pub use dump::{DumpError, DumpFilter, FilteredDumpError, dump_path, dump_path_filtered, io_error_text};
pub use encoder::{EncodeError, NarEncoder};
pub use background_hash::BackgroundHasher;
pub use copy::{copy_nar, copy_nar_async};
pub use decoder::NarDecoder;
pub use parser::{NarReadError, NarStats, NarVisitor, parse, parse_prefix, validate};
pub use path_hash::{HashingWriter, hash_file, hash_path};
pub use restore::restore;

/// The string every NAR starts with.
pub const MAGIC: &[u8] = b"nix-archive-1";

/// Longest entry name accepted when parsing (Linux's `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// Longest symlink target accepted when parsing (Linux's `PATH_MAX` - 1).
pub const MAX_TARGET_LEN: usize = 4095;

/// Size of the buffers used to stream contents in and out.
pub(crate) const BUF_SIZE: usize = 256 * 1024;

/// Number of zero bytes that follow `len` bytes to reach a multiple of 8.
pub(crate) const fn padding(len: u64) -> usize {
    ((8 - (len % 8)) % 8) as usize
}

/// Whether `name` may appear as a directory entry name.
pub fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.iter().any(|&b| b == b'/' || b == 0)
}

/// A short, printable rendering of input bytes for error messages.
pub(crate) fn show_bytes(b: &[u8]) -> String {
    const MAX: usize = 64;
    let shown = String::from_utf8_lossy(&b[..b.len().min(MAX)]).escape_debug().to_string();
    if b.len() > MAX { format!("{shown}...") } else { shown }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_to_eight() {
        assert_eq!([0, 1, 7, 8, 9, 13].map(padding), [0, 7, 1, 0, 7, 3]);
    }

    #[test]
    fn names() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
        for good in [&b"a"[..], b"...", b".a", b"\xff\xfe", "ünï".as_bytes()] {
            assert!(is_valid_name(good), "{good:?}");
        }
    }
}
