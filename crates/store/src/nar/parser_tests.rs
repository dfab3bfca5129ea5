//! Unit tests of the parser: events for valid NARs, one case per rejection.

use super::*;
use crate::nar::{MAX_NAME_LEN, MAX_TARGET_LEN, show_bytes};
use crate::nar::test_util::{nar, nar_dir, nar_regular, nar_symlink, node_dir, node_regular, s, strs};

/// Records events as strings.
#[derive(Default)]
struct Log(Vec<String>);

impl NarVisitor for Log {
    fn directory(&mut self, path: &[u8]) -> Result<(), NarReadError> {
        self.0.push(format!("dir {}", show_bytes(path)));
        Ok(())
    }
    fn directory_end(&mut self, path: &[u8]) -> Result<(), NarReadError> {
        self.0.push(format!("end {}", show_bytes(path)));
        Ok(())
    }
    fn regular(&mut self, path: &[u8], executable: bool, size: u64) -> Result<(), NarReadError> {
        self.0.push(format!("file {} x={executable} {size}", show_bytes(path)));
        Ok(())
    }
    fn contents(&mut self, chunk: &[u8]) -> Result<(), NarReadError> {
        self.0.push(format!("data {}", chunk.len()));
        Ok(())
    }
    fn regular_end(&mut self) -> Result<(), NarReadError> {
        self.0.push("eof".into());
        Ok(())
    }
    fn symlink(&mut self, path: &[u8], target: &[u8]) -> Result<(), NarReadError> {
        self.0.push(format!("link {} -> {}", show_bytes(path), show_bytes(target)));
        Ok(())
    }
}

fn events(nar: &[u8]) -> Vec<String> {
    let mut log = Log::default();
    let stats = parse(nar, &mut log).unwrap();
    assert_eq!(stats.nar_size, nar.len() as u64);
    log.0
}

#[test]
fn events_in_document_order() {
    let nar = nar_dir(&[
        (b"a", nar_dir(&[(b"b", nar_regular(true, b"xyz")), (b"c", nar_dir(&[]))])),
        (b"d", nar_symlink(b"a/b")),
        (b"e", nar_regular(false, b"")),
    ]);
    assert_eq!(
        events(&nar),
        [
            "dir ", "dir a", "file a/b x=true 3", "data 3", "eof", "dir a/c", "end a/c", "end a", "link d -> a/b",
            "file e x=false 0", "eof", "end "
        ]
    );
    assert_eq!(events(&nar_symlink(b"/abs")), ["link  -> /abs"]);
}

#[test]
fn stats_count_objects() {
    let nar = nar_dir(&[(b"a", nar_regular(false, b"12345")), (b"b", nar_dir(&[(b"c", nar_symlink(b"x"))]))]);
    let st = validate(&nar[..]).unwrap();
    let expected = NarStats { nar_size: nar.len() as u64, regular_files: 1, directories: 2, symlinks: 1, contents_size: 5 };
    assert_eq!(st, expected);
}

#[test]
fn parse_prefix_stops_at_the_end() {
    let mut data = nar_regular(false, b"abc");
    let len = data.len();
    data.extend_from_slice(b"rest");
    let mut r = &data[..];
    struct N;
    impl NarVisitor for N {}
    assert_eq!(parse_prefix(&mut r, &mut N).unwrap().nar_size, len as u64);
    assert_eq!(r, b"rest");
    assert!(matches!(validate(&data[..]), Err(NarReadError::TrailingData { offset }) if offset == len as u64));
}

/// The error for a NAR that must be rejected.
fn reject(nar: &[u8]) -> NarReadError {
    let err = validate(nar).expect_err("NAR must be rejected");
    let _ = err.to_string();
    err
}

#[test]
fn rejects_bad_magic() {
    assert!(matches!(reject(&s(b"nix-archive-2")), NarReadError::BadMagic));
    assert!(matches!(reject(&s(b"nix-archive")), NarReadError::BadMagic));
    assert!(matches!(reject(&u64::MAX.to_le_bytes()), NarReadError::BadMagic));
    let mut bad_pad = nar_regular(false, b"");
    bad_pad[8 + 13] = 1;
    assert!(matches!(reject(&bad_pad), NarReadError::BadMagic));
    assert!(matches!(reject(b""), NarReadError::Truncated { offset: 0 }));
}

#[test]
fn rejects_unknown_and_misplaced_tags() {
    let cases: Vec<Vec<u8>> = vec![
        nar(strs(&[b"(", b"type", b"fifo", b")"])),
        nar(strs(&[b"[", b"type", b"regular", b"contents", b"", b")"])),
        nar(strs(&[b"(", b"kind", b"regular", b"contents", b"", b")"])),
        nar(strs(&[b"(", b"type", b"regular", b"executable", b"", b"executable", b"", b"contents", b"", b")"])),
        nar(strs(&[b"(", b"type", b"regular", b"contents", b"", b"contents", b"", b")"])),
        nar(strs(&[b"(", b"type", b"regular", b")"])),
        nar(strs(&[b"(", b"type", b"symlink", b"contents", b"x", b")"])),
        nar(strs(&[b"(", b"type", b"directory", b"target", b"x", b")"])),
        nar(strs(&[b"(", b"type", b"directory", b"entry", b"(", b"node", b"name", b"x", b")"])),
        nar(strs(&[b"(", b"type", b"directory", b"entry", b"(", b"name", b"x", b")", b")"])),
    ];
    for (i, nar) in cases.iter().enumerate() {
        let err = reject(nar);
        assert!(
            matches!(err, NarReadError::UnexpectedTag { .. } | NarReadError::UnknownType { .. }),
            "case {i}: {err}"
        );
    }
    let err = reject(&nar(strs(&[b"(", b"type", b"regular", b"executable", b"yes", b"contents", b"", b")"])));
    assert!(err.to_string().contains("empty executable marker"), "{err}");
}

#[test]
fn rejects_invalid_names() {
    for name in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0b", b"\0"] {
        let err = reject(&nar_dir(&[(name, nar_regular(false, b""))]));
        assert!(matches!(err, NarReadError::InvalidName { .. }), "{name:?}: {err}");
    }
}

#[test]
fn rejects_unsorted_and_duplicate_entries() {
    let f = || nar_regular(false, b"");
    assert!(matches!(reject(&nar_dir(&[(b"b", f()), (b"a", f())])), NarReadError::NotSorted { .. }));
    assert!(matches!(reject(&nar_dir(&[(b"a", f()), (b"a", f())])), NarReadError::DuplicateName { .. }));
    // Bytewise, not by character: 0xff sorts after 'z'.
    validate(&nar_dir(&[(b"z", f()), (b"\xff", f())])[..]).unwrap();
    assert!(matches!(reject(&nar_dir(&[(b"\xff", f()), (b"z", f())])), NarReadError::NotSorted { .. }));
    // A file then a directory of the same name: rejected before the directory is seen.
    let sneaky = nar_dir(&[(b"x", nar_symlink(b"/etc")), (b"x", nar_dir(&[(b"passwd", f())]))]);
    assert!(matches!(reject(&sneaky), NarReadError::DuplicateName { .. }));
    // Sorting is per directory: the same name in different directories is fine.
    validate(&nar_dir(&[(b"a", nar_dir(&[(b"a", f())])), (b"b", nar_dir(&[(b"a", f())]))])[..]).unwrap();
}

#[test]
fn rejects_bad_symlink_targets() {
    assert!(matches!(reject(&nar_symlink(b"")), NarReadError::InvalidTarget { .. }));
    assert!(matches!(reject(&nar_symlink(b"a\0b")), NarReadError::InvalidTarget { .. }));
    let long = vec![b'a'; MAX_TARGET_LEN + 1];
    assert!(matches!(reject(&nar_symlink(&long)), NarReadError::StringTooLong { .. }));
    validate(&nar_symlink(&long[..MAX_TARGET_LEN])[..]).unwrap();
}

#[test]
fn caps_string_lengths_before_allocating() {
    let long = vec![b'n'; MAX_NAME_LEN + 1];
    assert!(matches!(reject(&nar_dir(&[(&long, nar_regular(false, b""))])), NarReadError::StringTooLong { .. }));
    validate(&nar_dir(&[(&long[..MAX_NAME_LEN], nar_regular(false, b""))])[..]).unwrap();
    // A name claiming 2^63 bytes.
    let mut huge = nar(strs(&[b"(", b"type", b"directory", b"entry", b"(", b"name"]));
    huge.extend_from_slice(&(1u64 << 63).to_le_bytes());
    assert!(matches!(reject(&huge), NarReadError::StringTooLong { .. }));
    // A tag claiming u64::MAX bytes.
    let mut huge_tag = s(b"nix-archive-1");
    huge_tag.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(reject(&huge_tag), NarReadError::UnexpectedTag { .. }));
    // Contents claiming 2^62 bytes are streamed, not allocated: plain truncation.
    let mut big = nar(strs(&[b"(", b"type", b"regular", b"contents"]));
    big.extend_from_slice(&(1u64 << 62).to_le_bytes());
    big.extend_from_slice(b"some bytes");
    assert!(matches!(reject(&big), NarReadError::Truncated { .. }));
}

#[test]
fn rejects_non_zero_padding() {
    let mut nar = nar_regular(false, b"abc");
    let pad = nar.len() - 16 - 5; // contents "abc" + 5 padding bytes, then ")"
    nar[pad] = 1;
    assert!(matches!(reject(&nar), NarReadError::NonZeroPadding { .. }));
    let mut tag_pad = nar_regular(false, b"");
    tag_pad[24 + 8 + 1] = b' '; // the padding of "(" (after the 24-byte magic)
    assert!(matches!(reject(&tag_pad), NarReadError::NonZeroPadding { .. }));
}

#[test]
fn rejects_truncation_and_trailing_data() {
    let full = nar_dir(&[(b"a", nar_regular(false, b"hello"))]);
    for cut in 0..full.len() {
        assert!(matches!(reject(&full[..cut]), NarReadError::Truncated { .. }), "cut at {cut}");
    }
    let mut trailing = full.clone();
    trailing.push(0);
    assert!(matches!(reject(&trailing), NarReadError::TrailingData { .. }));
    let mut two = full.clone();
    two.extend_from_slice(&node_dir(&[]));
    assert!(matches!(reject(&two), NarReadError::TrailingData { .. }));
}

#[test]
fn deep_nesting_does_not_recurse() {
    let depth = 100_000;
    let mut nar = s(b"nix-archive-1");
    for _ in 0..depth {
        nar.extend(strs(&[b"(", b"type", b"directory", b"entry", b"(", b"name", b"d", b"node"]));
    }
    nar.extend(node_regular(false, b"leaf"));
    for _ in 0..depth {
        nar.extend(strs(&[b")", b")"]));
    }
    let st = validate(&nar[..]).unwrap();
    assert_eq!((st.directories, st.regular_files), (depth, 1));
}

#[test]
fn visitor_errors_stop_the_parse() {
    struct Fail;
    impl NarVisitor for Fail {
        fn symlink(&mut self, _: &[u8], _: &[u8]) -> Result<(), NarReadError> {
            Err(NarReadError::Io(io::Error::other("stop")))
        }
    }
    let err = parse(&nar_symlink(b"x")[..], &mut Fail).unwrap_err();
    assert!(err.to_string().contains("stop"));
}
