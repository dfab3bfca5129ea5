//! `scopedImport` compiles a file once per set of scope names: every call
//! gets its own values (results as `nix-instantiate --eval --strict` gives
//! them), and the file is read again only for a different set of names.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndeploy_eval::io::{EvalIO, FileType, MemIO};
use ndeploy_eval::{EvalConfig, Evaluator};

/// A [`MemIO`] that counts how often each file is read.
struct CountingIO {
    inner: MemIO,
    reads: AtomicUsize,
}

impl EvalIO for CountingIO {
    fn read_file(&self, path: &str) -> io::Result<Vec<u8>> {
        if path == "/p/f.nix" {
            self.reads.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.read_file(path)
    }
    fn read_dir(&self, path: &str) -> io::Result<Vec<(String, FileType)>> {
        self.inner.read_dir(path)
    }
    fn file_type(&self, path: &str) -> io::Result<FileType> {
        self.inner.file_type(path)
    }
    fn path_exists(&self, path: &str) -> bool {
        self.inner.path_exists(path)
    }
    fn get_env(&self, name: &str) -> Option<String> {
        self.inner.get_env(name)
    }
    fn current_time(&self) -> i64 {
        self.inner.current_time()
    }
}

#[test]
fn scoped_import_compiles_once_per_scope_names() {
    let io = Arc::new(CountingIO {
        inner: MemIO::new().with_file("/p/f.nix", "{ a = x + y; b = map (n: n * x) [ 1 2 ]; c = builtins.length [ x ]; }"),
        reads: AtomicUsize::new(0),
    });
    let ev = Evaluator::new(EvalConfig::default(), io.clone());
    let expr = "let f = /p/f.nix; in [ (scopedImport { x = 1; y = 2; } f) (scopedImport { x = 10; y = 20; } f) \
                (scopedImport { y = 1; x = 5; z = 0; } f) (scopedImport { x = 2; y = 3; } f).a ]";
    let v = ev.eval_str(expr).unwrap();
    let v = ev.force_deep(&v).unwrap();
    // nix-instantiate --eval --strict, same expression and file:
    assert_eq!(
        ndeploy_eval::print::print_value(&ev, &v, true).unwrap(),
        "[ { a = 3; b = [ 1 2 ]; c = 1; } { a = 30; b = [ 10 20 ]; c = 1; } { a = 6; b = [ 5 10 ]; c = 1; } 5 ]"
    );
    // Names {x, y} three times, {x, y, z} once.
    assert_eq!(io.reads.load(Ordering::SeqCst), 2);
}
