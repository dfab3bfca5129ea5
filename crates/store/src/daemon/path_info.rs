//! [`PathInfo`] on the wire (Nix's `ValidPathInfo` serialiser, format ≥ 1.16).
//!
//! ```text
//! [path]  deriver ("" = none)  narHash (base16, no algo)  references (path set)
//! registrationTime  narSize  ultimate  sigs (string set)  ca ("" = none)
//! ```
//!
//! QueryPathInfo replies without the leading path; AddToStoreNar and each
//! AddMultipleToStore entry include it. Every protocol we accept (≥ 1.34) uses
//! the ≥ 1.16 layout, so there is no version switch here.

use tokio::io::AsyncRead;

use super::wire::{MAX_STRING_LEN, WireBuf, read_bool, read_opt_path, read_paths, read_string, read_strings, read_u64};
use super::{DaemonError, Result};
use crate::content_address::ContentAddress;
use crate::hash::{Hash, HashAlgo};
use crate::path_info::PathInfo;
use crate::store_path::{StoreDir, StorePath};

/// Encode everything but the path.
pub fn write_unkeyed(w: &mut WireBuf, dir: &StoreDir, info: &PathInfo) {
    w.opt_path(dir, info.deriver.as_ref())
        .str(&info.nar_hash.to_base16())
        .paths(dir, &info.references)
        .u64(info.registration_time)
        .u64(info.nar_size)
        .bool(info.ultimate)
        .strings(&info.sigs)
        .str(&info.ca.as_ref().map(ContentAddress::to_string).unwrap_or_default());
}

/// Encode the path, then the rest.
pub fn write_keyed(w: &mut WireBuf, dir: &StoreDir, info: &PathInfo) {
    w.path(dir, &info.path);
    write_unkeyed(w, dir, info);
}

/// Decode everything but the path, which the caller already knows.
pub async fn read_unkeyed<R: AsyncRead + Unpin + ?Sized>(r: &mut R, dir: &StoreDir, path: StorePath) -> Result<PathInfo> {
    let deriver = read_opt_path(r, dir).await?;
    let hash = read_string(r, MAX_STRING_LEN, "NAR hash").await?;
    let nar_hash = Hash::parse(&hash, Some(HashAlgo::Sha256))
        .map_err(|e| DaemonError::protocol(format!("bad NAR hash for '{}': {e}", dir.display(&path))))?;
    let references = read_paths(r, dir).await?;
    let registration_time = read_u64(r).await?;
    let nar_size = read_u64(r).await?;
    let ultimate = read_bool(r).await?;
    let sigs = read_strings(r, MAX_STRING_LEN, "signature").await?.into_iter().collect();
    let ca = read_string(r, MAX_STRING_LEN, "content address").await?;
    let ca = ContentAddress::parse_opt(&ca)
        .map_err(|e| DaemonError::protocol(format!("bad content address for '{}': {e}", dir.display(&path))))?;
    Ok(PathInfo { path, deriver, nar_hash, references, registration_time, nar_size, ultimate, sigs, ca })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The third entry of Nix's libstore-tests `valid-path-info-1.16.bin`: a
    /// content-addressed path referring to itself and another path.
    const NIX_VECTOR: &str = "2f000000000000002f6e69782f73746f72652f6e35776b643966727234357061373469663567707a396a376d696667323766682d666f6f00000000000000000040000000000000003135653363353630383934636262323730383563663635623561326563623138343838633939393439376634353331623639303761373538316365366435323702000000000000002f000000000000002f6e69782f73746f72652f67317737687933716731773768793371673177376879337167317737687933712d626172002f000000000000002f6e69782f73746f72652f6e35776b643966727234357061373469663567707a396a376d696667323766682d666f6f007f5b0000000000003e8800000000000000000000000000000000000000000000430000000000000066697865643a723a7368613235363a316c72313837763664636b31726a68326a36737670696b63667a353377796c3371726c6362623430357a6c68313378306b6868680000000000";

    #[tokio::test]
    async fn matches_nix_test_vector() {
        let dir = StoreDir::default();
        let path = dir.parse("/nix/store/n5wkd9frr45pa74if5gpz9j7mifg27fh-foo").unwrap();
        let other = dir.parse("/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-bar").unwrap();
        let mut info = PathInfo::new(
            path.clone(),
            Hash::parse("sha256-FePFYIlMuycIXPZbWi7LGEiMmZSX9FMbaQenWBzm1Sc=", None).unwrap(),
            34878,
        );
        info.references = [path.clone(), other].into_iter().collect();
        info.registration_time = 23423;
        info.ca = Some(ContentAddress::parse("fixed:r:sha256:1lr187v6dck1rjh2j6svpikcfz53wyl3qrlcbb405zlh13x0khhh").unwrap());

        let mut w = WireBuf::new();
        write_keyed(&mut w, &dir, &info);
        assert_eq!(hex::encode(w.as_bytes()), NIX_VECTOR);

        let bytes = hex::decode(NIX_VECTOR).unwrap();
        let mut r = &bytes[..];
        assert_eq!(crate::daemon::wire::read_path(&mut r, &dir).await.unwrap(), path);
        let back = read_unkeyed(&mut r, &dir, path).await.unwrap();
        assert!(r.is_empty());
        assert_eq!(back, info);

        info.ultimate = true;
        info.sigs = ["k:c2ln".to_owned()].into_iter().collect();
        info.deriver = Some(dir.parse("/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-bar.drv").unwrap());
        let mut w = WireBuf::new();
        write_unkeyed(&mut w, &dir, &info);
        let back = read_unkeyed(&mut w.as_bytes(), &dir, info.path.clone()).await.unwrap();
        assert_eq!(back, info);
    }

    #[tokio::test]
    async fn rejects_bad_fields() {
        let dir = StoreDir::default();
        let path = dir.parse("/nix/store/n5wkd9frr45pa74if5gpz9j7mifg27fh-foo").unwrap();
        let mut w = WireBuf::new();
        w.str("").str("nothex").u64(0);
        let bytes = w.into_bytes();
        let e = read_unkeyed(&mut &bytes[..], &dir, path).await.unwrap_err();
        assert!(e.to_string().contains("bad NAR hash for '/nix/store/n5wkd9frr45pa74if5gpz9j7mifg27fh-foo'"), "{e}");
    }
}
