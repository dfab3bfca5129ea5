//! Synthetic fleets for evaluation benchmarks (`ndeploy bench eval`,
//! `ndeploy bench gen-fleet`, `benches/fleet/compare.sh`, the e2e tests).
//!
//! A fleet of `hosts` hosts sharing `modules` generated module files, as a
//! plain fleet (`fleet.nix`) on ndeploy's Nix library:
//!
//! ```text
//! fleet.nix                 { meta.system; defaults = ./modules; host-<h> = ./hosts/host-<h>.nix; … }
//! modules/default.nix       imports every shared module
//! modules/m<i>.nix          shared module i: options bench.m<i>.{enable,port,names,settings}
//! hosts/host-<h>.nix        the host: role (web / db / worker), targets, tags,
//!                           two host-specific inline modules
//! ```
//!
//! Shared module i declares an enable flag, a port, a list and an attrset
//! option and, when enabled, defines an /etc file, a systemd service and a
//! firewall port; every third module reads the previous module's option
//! under `mkIf` and adds a package and a user; half are enabled by
//! `mkDefault`. Hosts are web servers (nginx with a virtual host), databases
//! (postgresql with databases) or workers, enable a few extra shared modules
//! and set per-host settings, so every host's toplevel differs.
//!
//! With `packages` P > 0 the fleet also has a generated package set shared
//! by all hosts the way nixpkgs is ([`packages`]: `pkgs/default.nix` as the
//! hive's `meta.nixpkgs`, `modules/packages.nix` for every host's base
//! system, `roles/<role>.nix` for each role's packages); P = 0 gives the
//! fleet without it (ndeploy's own handful of packages), as before.
//!
//! The output is a pure function of (hosts, modules, packages): the same
//! arguments always give byte-identical files, so fleets can be reproduced.

use std::fmt::Write as _;
use std::path::Path;

#[path = "packages.rs"]
pub mod packages;

/// The files of the fleet: (path relative to the fleet directory, contents).
pub fn generate(hosts: usize, modules: usize, packages: usize) -> Vec<(String, String)> {
    let mut files = Vec::with_capacity(hosts + modules + 7);
    files.push(("fleet.nix".to_string(), fleet_file(hosts, modules, packages)));
    let mut imports = String::from("# Every shared module (generated).\n{\n  imports = [\n");
    if packages > 0 {
        imports.push_str("    ./packages.nix\n");
    }
    for i in 0..modules {
        let _ = writeln!(imports, "    ./m{i}.nix");
    }
    imports.push_str("  ];\n}\n");
    files.push(("modules/default.nix".to_string(), imports));
    for i in 0..modules {
        files.push((format!("modules/m{i}.nix"), module_file(i, modules)));
    }
    for h in 0..hosts {
        files.push((format!("hosts/host-{h}.nix"), host_file(h, modules, packages > 0)));
    }
    if packages > 0 {
        files.extend(packages::files(packages));
    }
    files
}

/// Write the fleet into `dir` (created if needed).
pub fn write(dir: &Path, hosts: usize, modules: usize, packages: usize) -> std::io::Result<()> {
    for (rel, contents) in generate(hosts, modules, packages) {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, contents)?;
    }
    Ok(())
}

/// Host names of a generated fleet, sorted as Nix sorts attribute names.
pub fn host_names(hosts: usize) -> Vec<String> {
    let mut names: Vec<String> = (0..hosts).map(|h| format!("host-{h}")).collect();
    names.sort();
    names
}

fn fleet_file(hosts: usize, modules: usize, packages: usize) -> String {
    let mut s = if packages == 0 {
        format!(
            "# A generated fleet: {hosts} hosts sharing {modules} modules (ndeploy bench gen-fleet).\n{{\n  meta.system = \"x86_64-linux\";\n  defaults = ./modules;\n"
        )
    } else {
        let n = packages.max(packages::MIN_PACKAGES);
        format!(
            "# A generated fleet: {hosts} hosts sharing {modules} modules and a package set of\n# {n} packages (ndeploy bench gen-fleet).\n{{\n  meta.system = \"x86_64-linux\";\n  # One package set for the whole fleet, given to every host as `pkgs`.\n  meta.nixpkgs = import ./pkgs {{ system = \"x86_64-linux\"; }};\n  defaults = ./modules;\n"
        )
    };
    for h in 0..hosts {
        let _ = writeln!(s, "  host-{h} = ./hosts/host-{h}.nix;");
    }
    s.push_str("}\n");
    s
}

fn module_file(i: usize, modules: usize) -> String {
    let prev = if i == 0 { 0 } else { i - 1 };
    let mut s = format!(
        r#"# Shared module {i} of {modules} (generated).
{{ config, lib, pkgs, ... }}:
let
  cfg = config.bench.m{i};
in
{{
  options.bench.m{i} = {{
    enable = lib.mkOption {{
      type = lib.types.bool;
      default = false;
      description = "Whether to run bench service {i}.";
    }};
    port = lib.mkOption {{
      type = lib.types.port;
      default = {port};
    }};
    names = lib.mkOption {{
      type = lib.types.listOf lib.types.str;
      default = [ ];
    }};
    settings = lib.mkOption {{
      type = lib.types.attrsOf lib.types.str;
      default = {{ }};
    }};
  }};

  config = lib.mkMerge [
    (lib.mkIf cfg.enable {{
      environment.etc."bench/m{i}.conf".text = ''
        port = ${{toString cfg.port}}
        names = ${{lib.concatStringsSep "," cfg.names}}
        ${{lib.concatStringsSep "\n" (lib.mapAttrsToList (k: v: "${{k}} = ${{v}}") cfg.settings)}}
      '';
      networking.firewall.allowedTCPPorts = [ cfg.port ];
      systemd.services."bench-m{i}" = {{
        description = "bench service {i}";
        wantedBy = [ "multi-user.target" ];
        after = [ "network.target" ];
        environment.BENCH_PORT = toString cfg.port;
        script = "echo m{i} on ${{config.networking.hostName}}:${{toString cfg.port}}";
        serviceConfig.Restart = "always";
      }};
      bench.m{i}.names = [ config.networking.hostName ];
      bench.m{i}.settings.owner = lib.mkDefault "ops";
    }})
"#,
        port = 10000 + i
    );
    if i.is_multiple_of(3) {
        let _ = write!(
            s,
            r#"    (lib.mkIf config.bench.m{prev}.enable {{
      environment.systemPackages = [ pkgs.hello ];
      users.users."svc-m{i}" = {{
        isSystemUser = true;
        group = "svc";
        uid = lib.mkDefault {uid};
      }};
    }})
"#,
            uid = 2000 + i
        );
    }
    let _ = write!(s, "    {{ bench.m{i}.enable = lib.mkDefault {}; }}\n  ];\n}}\n", i.is_multiple_of(2));
    s
}

fn host_file(h: usize, modules: usize, role_packages: bool) -> String {
    let role = ["web", "db", "worker"][h % 3];
    // Another enabled module (never m1, which every host sets itself).
    let extra = match (h * 7 + 2) % modules.max(1) {
        i if modules == 0 || i == 1 => String::new(),
        i => format!("bench.m{i}.enable = true;"),
    };
    let setting = if modules == 0 {
        String::new()
    } else {
        format!("bench.m{}.settings.shard = \"{}\";", (h * 13) % modules, h % 16)
    };
    let service = match role {
        "web" => format!(
            r#"services.nginx = {{
        enable = true;
        virtualHosts."host-{h}.bench.internal" = {{
          serverAliases = [ "www{h}.bench.internal" ];
          locations."/" = "return 200 'host-{h}';";
        }};
      }};"#
        ),
        "db" => format!(
            r#"services.postgresql = {{
        enable = true;
        ensureDatabases = [ "app{h}" "metrics" ];
      }};"#
        ),
        _ => "environment.systemPackages = [ pkgs.htop pkgs.curl ];".to_string(),
    };
    format!(
        r#"# Host {h} (generated): role {role}.
{{ config, lib, pkgs, ... }}:
{{
  imports = [
    {{
      # Host-specific module: identity and targets.
      networking.hostName = "host-{h}";
      networking.domain = "bench.internal";
      deployment = {{
        targetHost = "10.{a}.{b}.{c}";
        tags = [ "{role}" "{parity}" ];
      }};
      environment.etc."host-id".text = "host-{h} ${{config.networking.fqdn}}";
    }}
    {{
      # Host-specific module: its role.
      {service}
      services.node-exporter.enable = {exporter};
    }}{role_module}
  ];
  bench.m1.enable = {m1};
  {extra}
  {setting}
}}
"#,
        a = h / 65536 % 256,
        b = h / 256 % 256,
        c = h % 256,
        parity = if h.is_multiple_of(2) { "even" } else { "odd" },
        exporter = !h.is_multiple_of(4),
        m1 = h.is_multiple_of(5),
        role_module = if role_packages { format!("\n    ../roles/{role}.nix") } else { String::new() },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_complete() {
        let a = generate(3, 5, 0);
        assert_eq!(a, generate(3, 5, 0));
        let names: Vec<&str> = a.iter().map(|(p, _)| p.as_str()).collect();
        assert!(names.contains(&"fleet.nix") && names.contains(&"modules/m4.nix") && names.contains(&"hosts/host-2.nix"));
        assert_eq!(names.len(), 2 + 5 + 3);
        assert_eq!(host_names(12)[..4], ["host-0", "host-1", "host-10", "host-11"]);
        // With a package set: the same fleet plus the set, its base module
        // and the role modules, which hosts import.
        let b = generate(3, 5, 20);
        assert_eq!(b, generate(3, 5, 20));
        assert_eq!(b.len(), a.len() + 5);
        let file = |files: &[(String, String)], name: &str| files.iter().find(|(p, _)| p == name).map(|(_, c)| c.clone()).unwrap();
        assert!(file(&b, "fleet.nix").contains("meta.nixpkgs = import ./pkgs"));
        assert!(file(&b, "hosts/host-1.nix").contains("../roles/db.nix"));
        assert!(file(&b, "modules/default.nix").contains("./packages.nix"));
        assert!(!file(&a, "modules/default.nix").contains("./packages.nix"));
    }
}
