//! The references of valid paths as the local Nix store's database records
//! them (what Nix's `queryPathInfo` answers on a local store), for the
//! context of `builtins.readFile` on a store path built or added outside
//! this evaluation.
//!
//! Design: the SQLite database (`$NIX_STATE_DIR/db/db.sqlite`, by default
//! `/nix/var/nix/db/db.sqlite`) is opened read-only on the first question,
//! once; a database that cannot be opened or queried (none, no permission,
//! another schema) answers "unknown" for every path, as Nix treats a path it
//! cannot query (`readFile` then gives a string without context). Nothing is
//! ever written.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use ndeploy_store::store_path::{StoreDir, StorePath};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::ReferencesReader;

/// Read access to the local store's database.
pub struct LocalStoreDb {
    file: PathBuf,
    conn: OnceLock<Option<Mutex<Connection>>>,
}

impl LocalStoreDb {
    /// The database of the store whose state directory is `$NIX_STATE_DIR`
    /// (default `/nix/var/nix`).
    pub fn from_env() -> LocalStoreDb {
        let state = std::env::var_os("NIX_STATE_DIR").map_or_else(|| PathBuf::from("/nix/var/nix"), PathBuf::from);
        LocalStoreDb::at(state.join("db/db.sqlite"))
    }

    /// The database in `file`.
    pub fn at(file: PathBuf) -> LocalStoreDb {
        LocalStoreDb { file, conn: OnceLock::new() }
    }

    fn connection(&self) -> Option<&Mutex<Connection>> {
        self.conn
            .get_or_init(|| {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                Connection::open_with_flags(&self.file, flags).ok().map(Mutex::new)
            })
            .as_ref()
    }

    /// The references of `p` if it is a valid path; `None` if it is not, or
    /// if the database cannot tell.
    pub fn references(&self, dir: &StoreDir, p: &StorePath) -> Option<Vec<StorePath>> {
        let conn = self.connection()?.lock().unwrap_or_else(|e| e.into_inner());
        let path = dir.display(p);
        let id: i64 =
            conn.query_row("select id from ValidPaths where path = ?1", [&path], |r| r.get(0)).optional().ok()??;
        let mut st = conn
            .prepare_cached(
                "select v.path from Refs r join ValidPaths v on r.reference = v.id where r.referrer = ?1",
            )
            .ok()?;
        let rows = st.query_map([id], |r| r.get::<_, String>(0)).ok()?;
        let mut refs = Vec::new();
        for row in rows {
            // A row that is not a path of this store is skipped, not fatal.
            if let Ok(r) = row
                && let Ok(sp) = dir.parse(&r)
            {
                refs.push(sp);
            }
        }
        Some(refs)
    }

    /// This database as a [`ReferencesReader`] for a computing store.
    pub fn into_reader(self) -> Box<ReferencesReader> {
        Box::new(move |dir, p| self.references(dir, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with Nix's two tables (the columns used here).
    fn db(file: &std::path::Path) {
        let c = Connection::open(file).unwrap();
        c.execute_batch(
            "create table ValidPaths (id integer primary key autoincrement not null, path text unique not null);
             create table Refs (referrer integer not null, reference integer not null, primary key (referrer, reference));
             insert into ValidPaths (path) values ('/nix/store/7h7qgvs4kgzsn8a6rb274saxyqh4jxlz-a'),
                                                  ('/nix/store/00000000000000000000000000000000-b');
             insert into Refs values (1, 2), (1, 1);",
        )
        .unwrap();
    }

    #[test]
    fn references_of_valid_paths() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.sqlite");
        db(&file);
        let store = StoreDir::default();
        let local = LocalStoreDb::at(file);
        let a = StorePath::from_base_name("7h7qgvs4kgzsn8a6rb274saxyqh4jxlz-a").unwrap();
        let b = StorePath::from_base_name("00000000000000000000000000000000-b").unwrap();
        let mut refs = local.references(&store, &a).unwrap();
        refs.sort();
        let mut want = vec![a.clone(), b.clone()];
        want.sort();
        assert_eq!(refs, want);
        assert_eq!(local.references(&store, &b).unwrap(), Vec::<StorePath>::new());
        let unknown = StorePath::from_base_name("11111111111111111111111111111111-c").unwrap();
        assert_eq!(local.references(&store, &unknown), None);
        // No database: nothing is known, nothing fails.
        let none = LocalStoreDb::at(dir.path().join("missing/db.sqlite"));
        assert_eq!(none.references(&store, &a), None);
    }
}
