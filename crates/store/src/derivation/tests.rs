//! Unit tests for derivations. Fixtures are `.drv` files written by C++ Nix
//! 2.8 (`nix-instantiate`), with the store paths Nix gave them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::*;
use crate::hash::HashAlgo;

/// `derivation { name = "a"; outputs = ["out" "dev" "bin"]; args = ["-c" "echo \"hi\"\n\t\\ ü"]; ... }`
const A_PATH: &str = "/nix/store/kz17q4lasiaajlr8g7y9iyjickh2mgr2-a.drv";
const A_DRV: &str = r#"Derive([("bin","/nix/store/gb0fn00hjrjc5mjna5z3cslhmi56bwrk-a-bin","",""),("dev","/nix/store/gic2nkyz5anwkjibil1rmm02hmq86409-a-dev","",""),("out","/nix/store/c7dp0k0pfh0526kdavrsl89azdd2jayw-a","","")],[],[],"x86_64-linux","/bin/sh",["-c","echo \"hi\"\n\t\\ ü"],[("bin","/nix/store/gb0fn00hjrjc5mjna5z3cslhmi56bwrk-a-bin"),("builder","/bin/sh"),("dev","/nix/store/gic2nkyz5anwkjibil1rmm02hmq86409-a-dev"),("name","a"),("out","/nix/store/c7dp0k0pfh0526kdavrsl89azdd2jayw-a"),("outputs","out dev bin"),("system","x86_64-linux")])"#;

/// A recursive sha256 fixed-output derivation.
const F_PATH: &str = "/nix/store/rlr0g7l988jlawz7k9avjksmh3n7adw1-f.drv";
const F_DRV: &str = r#"Derive([("out","/nix/store/92mx48lzpi4pbjmxnj2hdspiss0vgr6s-f","r:sha256","ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")],[],[],"x86_64-linux","/bin/sh",[],[("builder","/bin/sh"),("name","f"),("out","/nix/store/92mx48lzpi4pbjmxnj2hdspiss0vgr6s-f"),("outputHash","sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="),("outputHashMode","recursive"),("system","x86_64-linux")])"#;

/// Depends on `a.dev`, `a.out`, `f`, a path literal and a `builtins.toFile`.
const B_PATH: &str = "/nix/store/nkghragkz81vjpk0zysm8k2mzh8zalsh-b.drv";
const B_DRV: &str = r#"Derive([("out","/nix/store/v5h2vn1p7bilwdwl4ic4wcq3244gsy6z-b","","")],[("/nix/store/kz17q4lasiaajlr8g7y9iyjickh2mgr2-a.drv",["dev","out"]),("/nix/store/rlr0g7l988jlawz7k9avjksmh3n7adw1-f.drv",["out"])],["/nix/store/mwa38arlyabac26bxvzgbnds3c5wkyj6-a.nix","/nix/store/vqpn17r03lqabwk0wksgpbgy620zwfd4-t"],"x86_64-linux","/bin/sh",[],[("builder","/bin/sh"),("dep","/nix/store/gic2nkyz5anwkjibil1rmm02hmq86409-a-dev"),("dep2","/nix/store/c7dp0k0pfh0526kdavrsl89azdd2jayw-a"),("name","b"),("out","/nix/store/v5h2vn1p7bilwdwl4ic4wcq3244gsy6z-b"),("src","/nix/store/mwa38arlyabac26bxvzgbnds3c5wkyj6-a.nix"),("system","x86_64-linux"),("t","/nix/store/vqpn17r03lqabwk0wksgpbgy620zwfd4-t"),("x","/nix/store/92mx48lzpi4pbjmxnj2hdspiss0vgr6s-f")])"#;

/// Two fixed-output derivations differing only in env `x` (same modulo hash),
/// and one depending on both: their entries merge in the modulo ATerm.
const SAME1_PATH: &str = "/nix/store/aa6r4ml0xgm663sgbz8d8lsa8hyd3i28-same.drv";
const SAME1_DRV: &str = r#"Derive([("out","/nix/store/4wqb5synl2ih18lqrqna3yb0hw1pzzzj-same","r:sha256","ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")],[],[],"x86_64-linux","/bin/sh",[],[("builder","/bin/sh"),("name","same"),("out","/nix/store/4wqb5synl2ih18lqrqna3yb0hw1pzzzj-same"),("outputHash","sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="),("outputHashMode","recursive"),("system","x86_64-linux"),("x","1")])"#;
const SAME2_PATH: &str = "/nix/store/2q62h62gwwpj9fq90myvf41ipassph24-same.drv";
const SAME2_DRV: &str = r#"Derive([("out","/nix/store/4wqb5synl2ih18lqrqna3yb0hw1pzzzj-same","r:sha256","ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")],[],[],"x86_64-linux","/bin/sh",[],[("builder","/bin/sh"),("name","same"),("out","/nix/store/4wqb5synl2ih18lqrqna3yb0hw1pzzzj-same"),("outputHash","sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="),("outputHashMode","recursive"),("system","x86_64-linux"),("x","2")])"#;
const MERGE_PATH: &str = "/nix/store/xi3dpaj84gj0ii185glw3gdwh54xndnn-merge.drv";
const MERGE_DRV: &str = r#"Derive([("out","/nix/store/qh0b6jgmlh50kbymdjkyxal1qk55zk68-merge","","")],[("/nix/store/2q62h62gwwpj9fq90myvf41ipassph24-same.drv",["out"]),("/nix/store/aa6r4ml0xgm663sgbz8d8lsa8hyd3i28-same.drv",["out"])],[],"x86_64-linux","/bin/sh",[],[("a","/nix/store/4wqb5synl2ih18lqrqna3yb0hw1pzzzj-same"),("b","/nix/store/4wqb5synl2ih18lqrqna3yb0hw1pzzzj-same"),("builder","/bin/sh"),("name","merge"),("out","/nix/store/qh0b6jgmlh50kbymdjkyxal1qk55zk68-merge"),("system","x86_64-linux")])"#;

const FIXTURES: [(&str, &str); 6] = [
    (A_PATH, A_DRV),
    (F_PATH, F_DRV),
    (B_PATH, B_DRV),
    (SAME1_PATH, SAME1_DRV),
    (SAME2_PATH, SAME2_DRV),
    (MERGE_PATH, MERGE_DRV),
];

fn dir() -> StoreDir {
    StoreDir::default()
}

fn parse_fixture(path: &str, aterm: &str) -> (StorePath, Derivation) {
    let p = dir().parse(path).unwrap();
    let drv = Derivation::parse_drv_file(&dir(), &p, aterm.as_bytes()).unwrap();
    (p, drv)
}

fn read_fixture(p: &StorePath) -> Result<Derivation, DerivationError> {
    let printed = dir().display(p);
    let (_, aterm) = FIXTURES.iter().find(|(path, _)| *path == printed).ok_or(DerivationError::UnknownInput(printed))?;
    Ok(parse_fixture(&dir().display(p), aterm).1)
}

/// `drv` as `derivationStrict` starts it: output paths unknown, output env vars empty.
fn blanked(drv: &Derivation) -> Derivation {
    let mut blank = drv.clone();
    for (name, out) in blank.outputs.iter_mut() {
        if matches!(out, DerivationOutput::InputAddressed { .. }) {
            *out = DerivationOutput::Deferred;
        }
        blank.env.insert(name.clone(), String::new());
    }
    blank
}

#[test]
fn fixtures_round_trip_and_hash_to_their_paths() {
    for (path, aterm) in FIXTURES {
        let (p, drv) = parse_fixture(path, aterm);
        assert_eq!(String::from_utf8(drv.to_aterm(&dir()).unwrap()).unwrap(), aterm);
        assert_eq!(drv.drv_path(&dir()).unwrap(), p, "{path}");
        assert_eq!(drv.name, drv.env["name"]);
    }
}

#[test]
fn parses_fields() {
    let (_, a) = parse_fixture(A_PATH, A_DRV);
    assert_eq!(a.args, ["-c", "echo \"hi\"\n\t\\ ü"]);
    assert_eq!(a.outputs.keys().collect::<Vec<_>>(), ["bin", "dev", "out"]);
    assert_eq!(a.kind().unwrap(), DerivationKind::InputAddressed { deferred: false });
    let (_, f) = parse_fixture(F_PATH, F_DRV);
    let expected = Hash::parse("sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=", None).unwrap();
    assert_eq!(f.outputs["out"], DerivationOutput::CAFixed { method: FileIngestionMethod::Recursive, hash: expected });
    assert_eq!(f.kind().unwrap(), DerivationKind::Fixed);
    let (_, b) = parse_fixture(B_PATH, B_DRV);
    let a_path = dir().parse(A_PATH).unwrap();
    assert_eq!(b.input_drvs[&a_path], BTreeSet::from(["dev".to_owned(), "out".to_owned()]));
    assert_eq!(b.input_srcs.len(), 2);
}

#[test]
fn output_paths_recomputed_from_blanked_copies() {
    let mut cache = ModuloHashCache::new();
    for (path, aterm) in FIXTURES {
        let (p, drv) = parse_fixture(path, aterm);
        let mut blank = blanked(&drv);
        for input in drv.input_drvs.keys() {
            cache.hash_path(&dir(), input, read_fixture).unwrap();
        }
        blank.compute_output_paths(&dir(), |i| cache.lookup(i)).unwrap();
        assert_eq!(blank, drv, "{path}");
        cache.add(&dir(), p, &drv).unwrap();
    }
    assert_eq!(cache.len(), FIXTURES.len());
}

#[test]
fn fixed_outputs_with_equal_hashes_merge() {
    let (_, merge) = parse_fixture(MERGE_PATH, MERGE_DRV);
    let mut cache = ModuloHashCache::new();
    let masked = cache.hash_modulo(&dir(), &merge, true, read_fixture).unwrap();
    let h1 = cache.get(&dir().parse(SAME1_PATH).unwrap()).unwrap();
    assert_eq!(Some(h1), cache.get(&dir().parse(SAME2_PATH).unwrap()));
    // The masked ATerm lists the shared hash once (Nix's `inputs2` map).
    let mut replaced = aterm::ReplacedInputs::new();
    replaced.insert(h1.to_base16(), BTreeSet::from(["out"]));
    let mut text = Vec::new();
    aterm::write(&merge, &dir(), true, Some(&replaced), &mut text).unwrap();
    assert_eq!(masked, Hash::digest(HashAlgo::Sha256, &text));
    let text = String::from_utf8(text).unwrap();
    assert!(text.starts_with(&format!(r#"Derive([("out","","","")],[("{}",["out"])],[]"#, h1.to_base16())), "{text}");
    assert!(text.contains(r#"("out","")"#));
}

#[test]
fn fixed_modulo_hash_is_the_fixed_fingerprint() {
    let (_, f) = parse_fixture(F_PATH, F_DRV);
    let h = f.hash_modulo(&dir(), false, |_| Err::<Hash, _>(DerivationError::Cycle("unused".into()))).unwrap();
    let fp = "fixed:out:r:sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad:/nix/store/92mx48lzpi4pbjmxnj2hdspiss0vgr6s-f";
    assert_eq!(h, Hash::digest(HashAlgo::Sha256, fp));
}

#[test]
fn escaping_round_trips() {
    let tricky = ["", "\"", "\\", "\n\r\t", "a\\nb", "\u{0}\u{7f}ü€😀", "\\\"\\\\"];
    let mut drv = Derivation { name: "esc".into(), system: "s".into(), builder: "/bin/sh".into(), ..Default::default() };
    drv.outputs.insert("out".into(), DerivationOutput::Deferred);
    for (i, t) in tricky.iter().enumerate() {
        drv.args.push(t.to_string());
        drv.env.insert(format!("{t}{i}"), t.to_string());
    }
    drv.builder = "/bin/\"sh\"\n".into();
    let aterm = drv.to_aterm(&dir()).unwrap();
    let text = String::from_utf8(aterm.clone()).unwrap();
    assert!(text.contains(r#""/bin/\"sh\"\n""#), "{text}");
    assert!(text.contains(r#""\n\r\t""#) && text.contains(r#""a\\nb""#));
    assert_eq!(Derivation::parse(&dir(), &aterm, Some("esc")).unwrap(), drv);
    // Nix reads an unknown escape `\x` as `x`.
    let lax = text.replacen(r#""s","#, r#""\s\y","#, 1);
    assert_eq!(Derivation::parse(&dir(), lax.as_bytes(), Some("esc")).unwrap().system, "sy");
}

#[test]
fn name_from_env_or_argument() {
    let p = A_DRV.as_bytes();
    assert_eq!(Derivation::parse(&dir(), p, None).unwrap().name, "a");
    assert_eq!(Derivation::parse(&dir(), p, Some("zz")).unwrap().name, "zz");
    let no_name = A_DRV.replace(r#"("name","a"),"#, "");
    assert_eq!(Derivation::parse(&dir(), no_name.as_bytes(), None), Err(ParseError::MissingName));
}

fn parse_err(s: &str) -> ParseError {
    Derivation::parse(&dir(), s.as_bytes(), Some("x")).unwrap_err()
}

#[test]
fn parse_errors_carry_offsets() {
    assert_eq!(parse_err("Derivx"), ParseError::Expected { offset: 0, expected: "Derive(" });
    assert_eq!(parse_err("Derive([(\"out\"\"\""), ParseError::Expected { offset: 14, expected: "," });
    assert_eq!(parse_err("Derive([(\"out"), ParseError::UnterminatedString { offset: 9 });
    let trailing = format!("{A_DRV} ");
    assert_eq!(parse_err(&trailing), ParseError::TrailingData { offset: A_DRV.len() });
    // Missing comma between list elements (Nix would accept this; we do not).
    let no_comma = A_DRV.replace(r#"["-c","echo"#, r#"["-c""echo"#);
    assert!(matches!(parse_err(&no_comma), ParseError::Expected { expected: "',' or ']'", .. }));
    let dup = A_DRV.replace(r#"("name","a")"#, r#"("name","a"),("name","b")"#);
    assert!(matches!(parse_err(&dup), ParseError::Duplicate { what: "environment variable", .. }));
    let bad_path = A_DRV.replace("/nix/store/gb0fn00hjrjc5mjna5z3cslhmi56bwrk-a-bin\",\"\"", "/tmp/x\",\"\"");
    assert!(matches!(parse_err(&bad_path), ParseError::BadPath { offset: 15, .. }));
    let bad_algo = F_DRV.replace("r:sha256", "r:sha3");
    assert!(matches!(parse_err(&bad_algo), ParseError::BadHashAlgo { .. }));
    let bad_hash = F_DRV.replace("ba7816bf", "zz7816bf");
    assert!(matches!(parse_err(&bad_hash), ParseError::BadHash { .. }));
    let sri_hash = F_DRV.replace(
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
    );
    assert!(matches!(parse_err(&sri_hash), ParseError::BadHash { .. }));
    let mut bytes = A_DRV.as_bytes().to_vec();
    bytes[20] = 0xff;
    assert_eq!(Derivation::parse(&dir(), &bytes, None), Err(ParseError::InvalidUtf8 { offset: 20 }));
}

#[test]
fn every_prefix_and_mutation_fails_cleanly() {
    for (_, aterm) in FIXTURES {
        let b = aterm.as_bytes();
        for end in 0..b.len() {
            assert!(Derivation::parse(&dir(), &b[..end], Some("x")).is_err(), "prefix {end}");
        }
        // Deterministic pseudo-random single-byte mutations: must not panic.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut m = b.to_vec();
            let i = (seed >> 33) as usize % m.len();
            m[i] = b"\"\\,()[]x/0\n"[(seed >> 13) as usize % 11];
            if let Ok(d) = Derivation::parse(&dir(), &m, Some("x")) {
                let _ = d.to_aterm(&dir());
                let _ = d.hash_modulo(&dir(), true, |_| Ok::<_, DerivationError>(Hash::digest(HashAlgo::Sha256, "")));
            }
        }
    }
}

#[test]
fn kinds_are_checked() {
    let mut drv = Derivation { name: "k".into(), ..Default::default() };
    assert_eq!(drv.kind(), Err(DerivationError::NoOutputs("k".into())));
    let fixed = DerivationOutput::CAFixed { method: FileIngestionMethod::Flat, hash: Hash::digest(HashAlgo::Sha1, "") };
    drv.outputs.insert("dev".into(), fixed.clone());
    assert!(matches!(drv.kind(), Err(DerivationError::FixedOutputNotOut { .. })));
    drv.outputs.insert("out".into(), fixed);
    assert_eq!(drv.kind(), Err(DerivationError::MultipleFixedOutputs("k".into())));
    drv.outputs.insert("dev".into(), DerivationOutput::Deferred);
    assert_eq!(drv.kind(), Err(DerivationError::MixedOutputTypes("k".into())));
    drv.outputs.clear();
    drv.outputs.insert("out".into(), DerivationOutput::CAFloating { method: FileIngestionMethod::Recursive, algo: HashAlgo::Sha256 });
    assert_eq!(drv.kind(), Ok(DerivationKind::Floating));
    drv.outputs.insert("dev".into(), DerivationOutput::CAFloating { method: FileIngestionMethod::Recursive, algo: HashAlgo::Sha1 });
    assert!(matches!(drv.kind(), Err(DerivationError::MixedFloatingAlgos(_))));
}

#[test]
fn floating_and_impure_outputs_round_trip() {
    let aterm = r#"Derive([("dev","","r:sha256",""),("out","","r:sha256","")],[],[],"x","/b",[],[("dev","/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9"),("out","/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9")])"#;
    let drv = Derivation::parse(&dir(), aterm.as_bytes(), Some("ca")).unwrap();
    assert_eq!(drv.kind(), Ok(DerivationKind::Floating));
    assert_eq!(drv.to_aterm(&dir()).unwrap(), aterm.as_bytes());
    let impure = r#"Derive([("out","","sha256","impure")],[],[],"x","/b",[],[])"#;
    let drv = Derivation::parse(&dir(), impure.as_bytes(), Some("i")).unwrap();
    assert_eq!(drv.outputs["out"], DerivationOutput::Impure { method: FileIngestionMethod::Flat, algo: HashAlgo::Sha256 });
    assert_eq!(drv.to_aterm(&dir()).unwrap(), impure.as_bytes());
    let bad = impure.replace(r#""","sha256""#, r#""/nix/store/92mx48lzpi4pbjmxnj2hdspiss0vgr6s-f","sha256""#);
    assert!(matches!(parse_err(&bad), ParseError::BadOutput { .. }));
}

#[test]
fn printed_order_matches_string_order() {
    let mut paths = Vec::new();
    let mut seed: u64 = 1;
    for i in 0..500u32 {
        let mut digest = [0u8; 20];
        for b in digest.iter_mut() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *b = (seed >> 56) as u8;
        }
        if i % 7 == 0 {
            digest[0] = 0; // share high bytes to exercise ties on the low end
        }
        if i % 5 == 0 {
            digest[16..].copy_from_slice(&[7, 7, 7, 7]); // ties on the most significant (last) bytes
        }
        if i % 11 == 0 {
            digest[..19].fill(3); // ties on everything but the last byte
        }
        paths.push(StorePath::new(digest, &format!("n{}", i % 3)).unwrap());
    }
    let mut by_string = paths.clone();
    by_string.sort_by_key(|p| p.to_string());
    paths.sort();
    assert_eq!(paths, by_string);
}

#[test]
fn cache_rejects_cycles_and_unknown_outputs() {
    let dir = dir();
    let mk = |name: &str, inputs: &[(&StorePath, &str)]| {
        let mut d = Derivation { name: name.into(), system: "x".into(), builder: "/b".into(), ..Default::default() };
        d.outputs.insert("out".into(), DerivationOutput::Deferred);
        for (p, o) in inputs {
            d.input_drvs.entry((*p).clone()).or_default().insert(o.to_string());
        }
        d
    };
    let p1 = StorePath::new([1; 20], "one.drv").unwrap();
    let p2 = StorePath::new([2; 20], "two.drv").unwrap();
    let drvs: HashMap<StorePath, Derivation> =
        HashMap::from([(p1.clone(), mk("one", &[(&p2, "out")])), (p2.clone(), mk("two", &[(&p1, "out")]))]);
    let read = |p: &StorePath| drvs.get(p).cloned().ok_or(DerivationError::UnknownInput(p.to_string()));
    assert!(matches!(ModuloHashCache::new().hash_path(&dir, &p1, read), Err(DerivationError::Cycle(_))));

    let (fp, f) = parse_fixture(F_PATH, F_DRV);
    let mut cache = ModuloHashCache::new();
    cache.add(&dir, fp.clone(), &f).unwrap();
    let wants_dev = mk("w", &[(&fp, "dev")]);
    assert!(matches!(cache.hash_known(&dir, &wants_dev, true), Err(DerivationError::NoSuchOutput { .. })));
    let unknown = mk("u", &[(&p1, "out")]);
    assert_eq!(cache.hash_known(&dir, &unknown, true), Err(DerivationError::UnknownInput(p1.to_string())));
}

#[test]
fn deep_chain_does_not_overflow_the_stack() {
    let dir = dir();
    let mut drvs: BTreeMap<StorePath, Derivation> = BTreeMap::new();
    let mut prev: Option<StorePath> = None;
    let mut cache = ModuloHashCache::new();
    for i in 0..20_000 {
        let mut d = Derivation { name: format!("c{i}"), system: "x".into(), builder: "/b".into(), ..Default::default() };
        d.outputs.insert("out".into(), DerivationOutput::Deferred);
        if let Some(p) = &prev {
            d.input_drvs.insert(p.clone(), BTreeSet::from(["out".to_owned()]));
        }
        d.compute_output_paths(&dir, |p| cache.lookup(p)).unwrap();
        let p = d.drv_path(&dir).unwrap();
        cache.add(&dir, p.clone(), &d).unwrap();
        drvs.insert(p.clone(), d);
        prev = Some(p);
    }
    let top = prev.unwrap();
    let expected = cache.get(&top).unwrap();
    let mut reads = 0;
    let got = ModuloHashCache::new()
        .hash_path(&dir, &top, |p| {
            reads += 1;
            drvs.get(p).cloned().ok_or(DerivationError::UnknownInput(p.to_string()))
        })
        .unwrap();
    assert_eq!(got, expected);
    assert_eq!(reads, drvs.len());
}

#[test]
fn verify_finds_tampering() {
    let (p, b) = parse_fixture(B_PATH, B_DRV);
    let mut cache = ModuloHashCache::new();
    let ok = verify::verify(&dir(), &b, B_DRV.as_bytes(), Some(&p), &mut cache, read_fixture).unwrap();
    assert_eq!(ok, verify::Verification { drv_path: p.clone(), mismatches: vec![] });
    let tampered = B_DRV.replace(r#"("name","b")"#, r#"("name","c")"#);
    let t = Derivation::parse_drv_file(&dir(), &p, tampered.as_bytes()).unwrap();
    let bad = verify::verify(&dir(), &t, tampered.as_bytes(), Some(&p), &mut cache, read_fixture).unwrap();
    assert!(matches!(bad.mismatches[0], verify::Mismatch::DrvPath { .. }), "{bad:?}");
    assert!(matches!(bad.mismatches[1], verify::Mismatch::OutputPath { .. }), "{bad:?}");
    assert!(matches!(bad.mismatches[2], verify::Mismatch::OutputEnv { .. }), "{bad:?}");
    let unsorted = B_DRV.replace(r#"["dev","out"]"#, r#"["out","dev"]"#);
    let u = Derivation::parse_drv_file(&dir(), &p, unsorted.as_bytes()).unwrap();
    let bad = verify::verify(&dir(), &u, unsorted.as_bytes(), Some(&p), &mut cache, read_fixture).unwrap();
    let offset = B_DRV.find(r#"["dev","out"]"#).unwrap() + 2;
    assert_eq!(bad.mismatches[0], verify::Mismatch::NotCanonical { offset });
}

#[test]
fn json_matches_nix_show_derivation() {
    let (p, a) = parse_fixture(A_PATH, A_DRV);
    let json = json::show_derivations(&dir(), &[(p, &a)]).unwrap();
    // `nix show-derivation` output for A_PATH, verbatim.
    let expected = r#"{
  "/nix/store/kz17q4lasiaajlr8g7y9iyjickh2mgr2-a.drv": {
    "outputs": {
      "bin": {
        "path": "/nix/store/gb0fn00hjrjc5mjna5z3cslhmi56bwrk-a-bin"
      },
      "dev": {
        "path": "/nix/store/gic2nkyz5anwkjibil1rmm02hmq86409-a-dev"
      },
      "out": {
        "path": "/nix/store/c7dp0k0pfh0526kdavrsl89azdd2jayw-a"
      }
    },
    "inputSrcs": [],
    "inputDrvs": {},
    "system": "x86_64-linux",
    "builder": "/bin/sh",
    "args": [
      "-c",
      "echo \"hi\"\n\t\\ ü"
    ],
    "env": {
      "bin": "/nix/store/gb0fn00hjrjc5mjna5z3cslhmi56bwrk-a-bin",
      "builder": "/bin/sh",
      "dev": "/nix/store/gic2nkyz5anwkjibil1rmm02hmq86409-a-dev",
      "name": "a",
      "out": "/nix/store/c7dp0k0pfh0526kdavrsl89azdd2jayw-a",
      "outputs": "out dev bin",
      "system": "x86_64-linux"
    }
  }
}
"#;
    assert_eq!(json, expected);
    let mut ctl = a.clone();
    ctl.args = vec!["\u{8}\u{c}\u{1}\u{7f}".into()];
    let json = json::show_derivations(&dir(), &[(dir().parse(A_PATH).unwrap(), &ctl)]).unwrap();
    assert!(json.contains(r#""\u0008\u000c\u0001"#), "{json}");
}

#[test]
fn instantiate_reproduces_nix_files_and_hashes() {
    let mut cache = ModuloHashCache::new();
    // Creation order: inputs first.
    for path in [A_PATH, F_PATH, B_PATH, SAME1_PATH, SAME2_PATH, MERGE_PATH] {
        let (p, drv) = FIXTURES.iter().find(|(q, _)| *q == path).map(|(q, a)| parse_fixture(q, a)).unwrap();
        let mut blank = blanked(&drv);
        let done = cache.instantiate(&dir(), &mut blank).unwrap();
        assert_eq!(blank, drv);
        assert_eq!(done.drv_path, p);
        assert_eq!(done.aterm, drv.to_aterm(&dir()).unwrap());
        let fresh = ModuloHashCache::new().hash_path(&dir(), &p, read_fixture).unwrap();
        assert_eq!(done.modulo_hash, DrvHash { hash: fresh, deferred: false }, "{path}");
    }
}

#[test]
fn placeholders_and_deferred_outputs() {
    // Values from `nix-instantiate` output for `__contentAddressed` derivations.
    assert_eq!(hash_placeholder("out"), "/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9");
    assert_eq!(hash_placeholder("dev"), "/02qcpld1y6xhs5gz9bchpxaw0xdhmsp5dv88lh25r2ss44kh8dxz");
    let ca = r#"Derive([("dev","","r:sha256",""),("out","","r:sha256","")],[],[],"x86_64-linux","/bin/sh",[],[("builder","/bin/sh"),("dev","/02qcpld1y6xhs5gz9bchpxaw0xdhmsp5dv88lh25r2ss44kh8dxz"),("name","ca"),("out","/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9"),("outputHashAlgo","sha256"),("outputHashMode","recursive"),("outputs","out dev"),("system","x86_64-linux")])"#;
    let ca_path = dir().parse("/nix/store/809hd68vvfpi7cnll3ilvwg5qng30ymh-ca.drv").unwrap();
    let dep = r#"Derive([("out","","","")],[("/nix/store/809hd68vvfpi7cnll3ilvwg5qng30ymh-ca.drv",["dev"])],[],"x86_64-linux","/bin/sh",[],[("builder","/bin/sh"),("name","dep"),("out",""),("system","x86_64-linux"),("x","/0n40qcrmrsv91dsw86nd9mn7gi2jhyjka78s63b7h9cjnz66cfvh")])"#;
    let dep_path = dir().parse("/nix/store/m0y1xmmk5mqh5nsd90cnv0kvyhlf94by-dep.drv").unwrap();
    let mut cache = ModuloHashCache::new();
    for (path, aterm) in [(&ca_path, ca), (&dep_path, dep)] {
        let drv = Derivation::parse_drv_file(&dir(), path, aterm.as_bytes()).unwrap();
        let mut blank = blanked(&drv);
        let done = cache.instantiate(&dir(), &mut blank).unwrap();
        assert_eq!(blank, drv);
        assert_eq!((&done.drv_path, done.aterm.as_slice()), (path, aterm.as_bytes()));
        assert!(done.modulo_hash.deferred);
        let ok = verify::verify(&dir(), &drv, aterm.as_bytes(), Some(path), &mut cache, read_fixture).unwrap();
        assert_eq!(ok.mismatches, []);
    }
    let tampered = ca.replace("/02qcpld1", "/12qcpld1");
    let drv = Derivation::parse_drv_file(&dir(), &ca_path, tampered.as_bytes()).unwrap();
    let bad = verify::verify(&dir(), &drv, tampered.as_bytes(), None, &mut cache, read_fixture).unwrap();
    assert!(matches!(&bad.mismatches[..], [verify::Mismatch::OutputEnv { output, .. }] if output == "dev"), "{bad:?}");
}

#[test]
fn buffered_hasher_matches_one_shot_digest() {
    use aterm::{BufferedHasher, Sink};
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 31 % 251) as u8).collect();
    for pieces in [1usize, 7, 4095, 4096, 4097, 10_000] {
        let mut h = BufferedHasher::new(HashAlgo::Sha256);
        for chunk in data.chunks(pieces) {
            h.put(chunk);
        }
        assert_eq!(h.finish(), Hash::digest(HashAlgo::Sha256, &data), "pieces of {pieces}");
    }
}
