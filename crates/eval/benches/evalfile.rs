//! `evalfile FILE`: evaluate FILE strictly and print the value, as
//! `ndeploy instantiate --eval --strict FILE` does (same evaluator, store
//! layer and allocator), in a binary that only links the evaluator, so that
//! profiling the evaluator does not wait for the whole CLI to build:
//! `cargo build --release -p ndeploy-eval --bench evalfile`, then
//! `compare.sh target/release/deps/evalfile-*` (it accepts either binary).

use std::process::ExitCode;
use std::sync::Arc;

use ndeploy_eval::io::{ReadOnlyStore, RealIO};
use ndeploy_eval::{EvalConfig, Evaluator};

#[global_allocator]
static GLOBAL: ndeploy_eval::eval::alloc::EvalAlloc = ndeploy_eval::eval::alloc::EvalAlloc;

fn main() -> ExitCode {
    // `compare.sh` calls `BIN instantiate --eval --strict FILE` (or `-E EXPR`):
    // the file or expression is the last argument.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(input) = args.last() else {
        eprintln!("usage: evalfile [instantiate --eval --strict] (FILE | -E EXPR)");
        return ExitCode::FAILURE;
    };
    let mut ev = Evaluator::new(EvalConfig::default(), Arc::new(RealIO));
    ev.store = Some(Arc::new(ReadOnlyStore::new(&ev.config.store_dir)));
    let root = if args.iter().any(|a| a == "-E") {
        ev.eval_str(input)
    } else {
        match std::fs::canonicalize(input) {
            Ok(p) => ev.eval_file(&p.to_string_lossy()),
            Err(e) => {
                eprintln!("{input}: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    // As `instantiate`: the printed value is not freed (the process ends).
    let r = root.and_then(|v| {
        let r = ev.force_deep(&v).and_then(|v| {
            let s = ndeploy_eval::print::print_value(&ev, &v, true);
            std::mem::forget(v);
            s
        });
        std::mem::forget(v);
        r
    });
    let code = match r {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    // As `instantiate`: the process ends, freeing the heap would only cost time.
    std::mem::forget(ev);
    code
}
