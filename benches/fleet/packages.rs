//! The generated package set of a benchmark fleet (`--packages P`): what
//! hosts share the way NixOS hosts share nixpkgs.
//!
//! Design: `pkgs/default.nix` is a package set of P packages, each built by
//! a small `mkDerivation` (builder `/bin/sh` with a generic setup script,
//! `pname`/`version`, `meta` with platforms checked, split `out`/`dev`
//! outputs for every fifth package, dependents taking a split package's
//! `dev` output, one level of propagated inputs) from a fixed-output source
//! (`fetchurl`-like, whose `sha256` really is the hash of what its builder
//! writes), so the set holds 2P derivations. Packages form a DAG in
//! layers: a stdenv closure at the bottom (bootstrap tools, compiler, libc,
//! shell utilities, `stdenv-linux`, which every later package has as a
//! native build input), then well-known libraries and tools, then generated
//! ones (`lib<word>`, `python3.11-<word>`, `perl5.38-<Word>`, …), each with
//! 1-4 build inputs, mostly from the few dozen packages just before it
//! (layers) and sometimes from anywhere below; the last six are the
//! packages ndeploy's modules and the fleet's modules name (`curl`,
//! `hello`, `htop`, `nginx`, `postgresql`, `prometheus-node-exporter`).
//!
//! The fleet passes the set as the hive's `meta.nixpkgs` (an attribute set:
//! `nix/fleet.nix` gives it to every host as `pkgs`, computed once per
//! fleet, as colmena does with `meta.nixpkgs = import nixpkgs { … }`).
//! `modules/packages.nix` (imported by every host) puts a base selection in
//! `environment.systemPackages`, `roles/<role>.nix` (imported by hosts of
//! that role) a role selection, so every host's toplevel depends on the
//! closure of base + role packages: [`closures`] computes those closure
//! sizes, and the default P = 400 (800 derivations, host closures of about
//! 560-640 derivations with sources) is chosen so that a host's closure is in
//! the range of a minimal NixOS system's (~400-800 derivations).
//!
//! Everything is a pure function of P (a fixed-seed generator): the same P
//! always gives byte-identical files.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use ndeploy_store::hash::{Hash, HashAlgo};

/// The default size of the generated package set (see the module doc).
pub const DEFAULT_PACKAGES: usize = 400;

/// The smallest non-empty set: the six named packages and a small stdenv.
pub const MIN_PACKAGES: usize = 8;

/// The packages that ndeploy's modules and the generated modules name, in
/// the order they end the set: (attribute, pname, version).
const NAMED: [(&str, &str, &str); 6] = [
    ("curl", "curl", "8.4.0"),
    ("hello", "hello", "2.12"),
    ("htop", "htop", "3.2.2"),
    ("nginx", "nginx", "1.24.0"),
    ("postgresql", "postgresql", "15.4"),
    ("prometheus-node-exporter", "node_exporter", "1.6.1"),
];

/// The stdenv closure, bottom up (its last member is `stdenv-linux`).
const STDENV: [&str; 18] = [
    "bootstrap-tools",
    "glibc",
    "binutils",
    "gcc",
    "bash",
    "coreutils",
    "gnused",
    "gnugrep",
    "gawk",
    "findutils",
    "diffutils",
    "gnutar",
    "gzip",
    "bzip2",
    "xz",
    "gnumake",
    "patch",
    "patchelf",
];

/// Well-known libraries and tools above the stdenv.
const WELL_KNOWN: [&str; 50] = [
    "zlib", "openssl", "libffi", "ncurses", "readline", "sqlite", "expat", "libxml2", "pcre2", "util-linux",
    "libcap", "acl", "attr", "kmod", "dbus", "systemd", "linux-pam", "shadow", "iproute2", "iptables",
    "openssh", "perl", "python3", "gettext", "libidn2", "libunistring", "nghttp2", "brotli", "zstd", "lz4",
    "libseccomp", "audit", "e2fsprogs", "gnupg", "libgcrypt", "libgpg-error", "gmp", "mpfr", "icu", "krb5",
    "keyutils", "cyrus-sasl", "libevent", "jemalloc", "tzdata", "cacert", "nix", "sudo", "less", "procps",
];

const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "zen", "tor", "vel", "qua", "ris", "dan", "fel", "gor", "hun", "jas", "bek", "nor", "pix",
    "sol", "tam", "ux", "wy", "bri", "cho", "dra", "ek",
];

const LICENSES: [&str; 5] = ["mit", "bsd3", "gpl2Plus", "lgpl21Plus", "asl20"];

/// One package of the set.
#[derive(Debug, Clone)]
struct Package {
    attr: String,
    pname: String,
    version: String,
    /// Indices of build inputs (all smaller than this package's).
    deps: Vec<usize>,
    /// Index of a propagated build input, if any.
    propagated: Option<usize>,
    split: bool,
    license: &'static str,
}

/// splitmix64: a small fixed-seed generator, so the set is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The packages of a set of `n` (≥ [`MIN_PACKAGES`]) packages.
fn packages(n: usize) -> Vec<Package> {
    let n = n.max(MIN_PACKAGES);
    let mut rng = Rng(0x6e64_6570_6c6f_7921);
    // The stdenv closure: a chain-like bottom layer, at most 1/8 of the set.
    let core = (n / 8).clamp(2, STDENV.len() + 1);
    let generated = n - NAMED.len();
    let mut seen = BTreeSet::new();
    let mut out: Vec<Package> = Vec::with_capacity(n);
    for i in 0..n {
        let (attr, pname, version) = if i + 1 == core {
            ("stdenv-linux".to_string(), "stdenv-linux".to_string(), String::new())
        } else if i < core {
            let name = STDENV.get(i).copied().unwrap_or("bootstrap-tools");
            (name.to_string(), name.to_string(), version(&mut rng))
        } else if i >= generated {
            let (a, p, v) = NAMED[i - generated];
            (a.to_string(), p.to_string(), v.to_string())
        } else if let Some(name) = WELL_KNOWN.get(i - core) {
            (name.to_string(), name.to_string(), version(&mut rng))
        } else {
            let (a, p) = generated_name(&mut rng, &mut seen);
            (a, p, version(&mut rng))
        };
        seen.insert(attr.clone());
        let deps = if i == 0 {
            Vec::new()
        } else if i < core {
            // Each stdenv member on one or two of the ones below it; the
            // stdenv itself on all of them.
            if i + 1 == core {
                (0..i).collect()
            } else {
                let mut d = vec![i - 1];
                if i >= 2 {
                    d.push(rng.below(i - 1));
                }
                d
            }
        } else {
            let k = 1 + rng.below(4);
            let mut d = BTreeSet::new();
            for _ in 0..k {
                let lo = core.max(i.saturating_sub(40));
                let pick = if lo < i && rng.below(10) < 7 { lo + rng.below(i - lo) } else { rng.below(i) };
                if pick != core - 1 {
                    d.insert(pick);
                }
            }
            d.into_iter().collect()
        };
        let propagated = (i >= core && i % 10 == 3).then(|| deps.first().copied()).flatten();
        let split = i >= core && i < generated && i % 5 == 1;
        let license = LICENSES[rng.below(LICENSES.len())];
        out.push(Package { attr, pname, version, deps, propagated, split, license });
    }
    out
}

fn version(rng: &mut Rng) -> String {
    format!("{}.{}.{}", rng.below(12), rng.below(30), rng.below(10))
}

/// A new (attribute, pname) of a generated package.
fn generated_name(rng: &mut Rng, seen: &mut BTreeSet<String>) -> (String, String) {
    loop {
        let syllables = 2 + rng.below(2);
        let word: String = (0..syllables).map(|_| SYLLABLES[rng.below(SYLLABLES.len())]).collect();
        let (attr, pname) = match rng.below(6) {
            0 | 1 => (format!("lib{word}"), format!("lib{word}")),
            2 => (format!("python311-{word}"), format!("python3.11-{word}")),
            3 => {
                let cap: String = word.chars().take(1).flat_map(char::to_uppercase).chain(word.chars().skip(1)).collect();
                (format!("perl-{word}"), format!("perl5.38-{cap}"))
            }
            4 => (format!("{word}-utils"), format!("{word}-utils")),
            _ => (word.clone(), word),
        };
        if !seen.contains(&attr) {
            return (attr, pname);
        }
    }
}

/// Indices of the base selection (every host) and of each role's.
fn selections(pkgs: &[Package]) -> (Vec<usize>, [Vec<usize>; 3]) {
    let n = pkgs.len();
    let named_start = n - NAMED.len();
    let mut rng = Rng(0x726f_6c65_7321);
    let mut pick = |from: usize, count: usize| -> Vec<usize> {
        let mut s = BTreeSet::new();
        for _ in 0..count.max(1) {
            s.insert(from + rng.below(named_start.saturating_sub(from).max(1)));
        }
        s.into_iter().filter(|&i| i < named_start).collect()
    };
    // The base system picks from the upper half, each role from the top
    // third (so roles add their own packages on top of the base closure).
    let base = pick(n / 2, n / 25);
    let roles = [pick(2 * n / 3, n / 50), pick(2 * n / 3, n / 50), pick(2 * n / 3, n / 50)];
    (base, roles)
}

/// Derivation counts: (the whole set with sources, and per role — web, db,
/// worker — the closure of a host's base + role packages with sources,
/// counting what the role's services and the fleet's modules add:
/// nginx / postgresql, node_exporter, hello, htop and curl).
pub fn closures(n: usize) -> (usize, [usize; 3]) {
    let pkgs = packages(n);
    let (base, roles) = selections(&pkgs);
    let index = |attr: &str| pkgs.iter().position(|p| p.attr == attr);
    let extra = [&["nginx"][..], &["postgresql"][..], &["htop", "curl"][..]];
    let mut sizes = [0; 3];
    for (r, role) in roles.iter().enumerate() {
        let mut roots: Vec<usize> = base.iter().chain(role).copied().collect();
        roots.extend(extra[r].iter().chain(&["prometheus-node-exporter", "hello"]).filter_map(|a| index(a)));
        let mut seen = BTreeSet::new();
        while let Some(i) = roots.pop() {
            if seen.insert(i) {
                roots.extend(pkgs[i].deps.iter().copied().chain(pkgs[i].propagated));
            }
        }
        sizes[r] = 2 * seen.len();
    }
    (2 * pkgs.len(), sizes)
}

/// The files of a package set of `n` packages (see the module doc):
/// `pkgs/default.nix`, `modules/packages.nix`, `roles/{web,db,worker}.nix`.
pub fn files(n: usize) -> Vec<(String, String)> {
    let pkgs = packages(n);
    let (base, roles) = selections(&pkgs);
    let list = |ix: &[usize]| ix.iter().map(|&i| format!("    pkgs.{}\n", pkgs[i].attr)).collect::<String>();
    let mut files = vec![("pkgs/default.nix".to_string(), package_set(&pkgs))];
    files.push((
        "modules/packages.nix".to_string(),
        format!(
            "# The base system's packages (generated): every host's toplevel depends on\n# their closure in the fleet's package set.\n{{ pkgs, ... }}:\n{{\n  environment.systemPackages = [\n{}  ];\n}}\n",
            list(&base)
        ),
    ));
    for (role, ix) in ["web", "db", "worker"].iter().zip(&roles) {
        files.push((
            format!("roles/{role}.nix"),
            format!(
                "# Packages of the {role} role (generated), on top of the base system's.\n{{ pkgs, ... }}:\n{{\n  environment.systemPackages = [\n{}  ];\n}}\n",
                list(ix)
            ),
        ));
    }
    files
}

/// What a source derivation of `tarball` writes (its output hash is this
/// text's SHA-256).
fn source_text(tarball: &str) -> String {
    format!("source of {tarball}\n")
}

fn package_set(pkgs: &[Package]) -> String {
    let mut s = format!(
        r#"# A generated package set of {n} packages and their sources ({d} derivations;
# ndeploy bench gen-fleet --packages {n}). Builds run /bin/sh with the host's
# coreutils (sandbox = false).
{{
  system ? "x86_64-linux",
}}:
let
  inherit (builtins) concatLists elem map removeAttrs;

  platforms.linux = [
    "x86_64-linux"
    "aarch64-linux"
    "i686-linux"
  ];
  licenses = {{
    mit = {{ spdxId = "MIT"; free = true; }};
    bsd3 = {{ spdxId = "BSD-3-Clause"; free = true; }};
    gpl2Plus = {{ spdxId = "GPL-2.0-or-later"; free = true; }};
    lgpl21Plus = {{ spdxId = "LGPL-2.1-or-later"; free = true; }};
    asl20 = {{ spdxId = "Apache-2.0"; free = true; }};
  }};

  # A source tarball: a fixed-output derivation whose builder writes
  # "source of <name>" (the hash is that text's).
  fetchurl =
    {{ url, sha256 }}:
    derivation {{
      name = baseNameOf url;
      inherit system url;
      builder = "/bin/sh";
      args = [
        "-c"
        "printf 'source of %s\\n' \"$name\" > \"$out\""
      ];
      outputHashMode = "flat";
      outputHashAlgo = "sha256";
      outputHash = sha256;
      preferLocalBuild = true;
    }};

  setup = builtins.toFile "generic-builder.sh" ''
    PATH=/usr/bin:/bin
    for o in $outputs; do
      eval "p=\$$o"
      mkdir -p "$p/nix-support"
    done
    mkdir -p "$out/bin" "$out/share/doc/$pname"
    printf '%s %s\n' "$pname" "$version" > "$out/share/doc/$pname/VERSION"
    cp "$src" "$out/share/doc/$pname/source"
    printf '%s\n' $buildInputs $nativeBuildInputs > "$out/nix-support/inputs"
    printf '%s\n' $propagatedBuildInputs > "$out/nix-support/propagated-build-inputs"
    printf '#!/bin/sh\necho "%s %s"\n' "$pname" "$version" > "$out/bin/$pname"
    chmod 0555 "$out/bin/$pname"
  '';

  # nixpkgs-style: split packages are used through their dev output,
  # propagated inputs of inputs are inputs too (one level), meta is checked
  # and kept out of the build environment.
  mkDerivation =
    {{
      pname,
      version,
      src ? null,
      buildInputs ? [ ],
      nativeBuildInputs ? [ ],
      propagatedBuildInputs ? [ ],
      outputs ? [ "out" ],
      meta ? {{ }},
      ...
    }}@attrs:
    let
      dev = d: d.dev or d;
      propagated = concatLists (map (d: d.propagatedBuildInputs or [ ]) (buildInputs ++ propagatedBuildInputs));
      drv = derivation (
        removeAttrs attrs [ "meta" ]
        // {{
          name = if version == "" then pname else "${{pname}}-${{version}}";
          inherit system outputs;
          builder = "/bin/sh";
          args = [
            "-e"
            setup
          ];
          buildInputs = map dev (buildInputs ++ propagated);
          nativeBuildInputs = map dev nativeBuildInputs;
          propagatedBuildInputs = map dev propagatedBuildInputs;
          enableParallelBuilding = true;
          strictDeps = true;
        }}
      );
    in
    if elem system (meta.platforms or platforms.linux) then
      drv // {{ inherit meta propagatedBuildInputs; }}
    else
      throw "${{pname}} is not available on ${{system}}";

  self = {{
    inherit system mkDerivation fetchurl;
"#,
        n = pkgs.len(),
        d = 2 * pkgs.len()
    );
    let stdenv = pkgs.iter().position(|p| p.attr == "stdenv-linux");
    for (i, p) in pkgs.iter().enumerate() {
        let full = if p.version.is_empty() { p.pname.clone() } else { format!("{}-{}", p.pname, p.version) };
        let tarball = format!("{full}.tar.gz");
        let sha = Hash::digest(HashAlgo::Sha256, source_text(&tarball)).to_base16();
        let refs = |ix: &mut dyn Iterator<Item = usize>| ix.map(|j| format!(" self.{}", pkgs[j].attr)).collect::<String>();
        let _ = write!(
            s,
            "    {attr} = mkDerivation {{\n      pname = \"{pname}\";\n      version = \"{version}\";\n      src = fetchurl {{\n        url = \"https://mirror.example.org/{pname}/{tarball}\";\n        sha256 = \"{sha}\";\n      }};\n",
            attr = p.attr,
            pname = p.pname,
            version = p.version,
        );
        if p.split {
            s.push_str("      outputs = [\n        \"out\"\n        \"dev\"\n      ];\n");
        }
        if let Some(sd) = stdenv.filter(|&sd| sd < i) {
            let _ = writeln!(s, "      nativeBuildInputs = [{} ];", refs(&mut std::iter::once(sd)));
        }
        if !p.deps.is_empty() {
            let _ = writeln!(s, "      buildInputs = [{} ];", refs(&mut p.deps.iter().copied()));
        }
        if let Some(d) = p.propagated {
            let _ = writeln!(s, "      propagatedBuildInputs = [{} ];", refs(&mut std::iter::once(d)));
        }
        if i % 3 == 0 {
            let _ = writeln!(s, "      configureFlags = [\n        \"--enable-shared\"\n        \"--disable-static\"\n      ];");
        }
        if i % 4 == 0 {
            s.push_str("      doCheck = true;\n");
        }
        let _ = write!(
            s,
            "      meta = {{\n        description = \"{pname} (generated package {i})\";\n        homepage = \"https://example.org/{pname}\";\n        license = licenses.{lic};\n        platforms = platforms.linux;\n      }};\n    }};\n",
            pname = p.pname,
            lic = p.license
        );
    }
    s.push_str("  };\nin\nself\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_is_a_dag_with_the_named_packages_last() {
        for n in [MIN_PACKAGES, 20, DEFAULT_PACKAGES] {
            let p = packages(n);
            assert_eq!(p.len(), n);
            for (i, pkg) in p.iter().enumerate() {
                assert!(pkg.deps.iter().chain(&pkg.propagated).all(|&d| d < i), "{n}: {pkg:?}");
            }
            let attrs: BTreeSet<&str> = p.iter().map(|x| x.attr.as_str()).collect();
            assert_eq!(attrs.len(), n, "attribute names are unique");
            let tail: Vec<&str> = p[n - 6..].iter().map(|x| x.attr.as_str()).collect();
            assert_eq!(tail, NAMED.map(|x| x.0));
        }
        assert_eq!(files(20), files(20));
    }

    #[test]
    fn default_closures_are_a_minimal_systems() {
        let (set, hosts) = closures(DEFAULT_PACKAGES);
        assert_eq!(set, 800);
        for c in hosts {
            assert!((400..=800).contains(&c), "{hosts:?}");
        }
    }
}
