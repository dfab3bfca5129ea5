# Derivation helpers for ndeploy's package set, without nixpkgs: builds run
# `/bin/sh` with the host's coreutils (PATH=/usr/bin:/bin), which needs
# `sandbox = false`. Every helper returns a plain `derivation`, so store
# paths depend only on the inputs given here.
{ system }:
let
  runCommand =
    name: env: script:
    derivation (
      env
      // {
        inherit name system;
        builder = "/bin/sh";
        args = [
          "-eu"
          "-c"
          script
        ];
        PATH = "/usr/bin:/bin";
      }
    );

  writeText =
    name: text:
    runCommand name {
      inherit text;
      passAsFile = [ "text" ];
    } ''cp "$textPath" "$out"'';

  writeScript =
    name: text:
    runCommand name {
      inherit text;
      passAsFile = [ "text" ];
    } ''cp "$textPath" "$out"; chmod 0555 "$out"'';

  # A package `pname-version` whose programs (`bins`: name -> shell body) run
  # with the shared core library sourced (when `core` is given) and with
  # `deps`' bin directories on PATH. Its outputs reference `core` and `deps`,
  # so they are runtime dependencies too.
  mkPackage =
    {
      pname,
      version,
      core ? null,
      deps ? [ ],
      bins ? { },
      files ? { },
      description ? pname,
    }:
    let
      binNames = builtins.attrNames bins;
      fileNames = builtins.attrNames files;
      index = names: builtins.genList (i: builtins.elemAt names i) (builtins.length names);
    in
    runCommand "${pname}-${version}"
      (
        {
          inherit pname version description;
          core = if core == null then "" else core;
          depBins = builtins.concatStringsSep ":" (map (d: "${d}/bin") deps);
          binNames = binNames;
          fileNames = fileNames;
          passAsFile = map (n: "bin_${n}") binNames ++ map (i: "file_${toString i}") (builtins.genList (i: i) (builtins.length fileNames));
          meta = builtins.toJSON { inherit description; };
        }
        // builtins.listToAttrs (map (n: { name = "bin_${n}"; value = bins.${n}; }) binNames)
        // builtins.listToAttrs (
          builtins.genList (i: {
            name = "file_${toString i}";
            value = files.${builtins.elemAt fileNames i};
          }) (builtins.length fileNames)
        )
      )
      ''
        mkdir -p "$out/bin" "$out/share/doc/$pname"
        printf '%s %s: %s\n' "$pname" "$version" "$description" > "$out/share/doc/$pname/README"
        for b in $binNames; do
          eval "src=\$bin_''${b}Path"
          {
            echo '#!/bin/sh'
            echo "PATH=$out/bin''${depBins:+:$depBins}:\$PATH"
            if [ -n "$core" ]; then echo ". $core/lib/ndcore.sh"; fi
            cat "$src"
          } > "$out/bin/$b"
          chmod 0555 "$out/bin/$b"
        done
        i=0
        for f in $fileNames; do
          eval "src=\$file_''${i}Path"
          mkdir -p "$out/$(dirname "$f")"
          cp "$src" "$out/$f"
          i=$((i + 1))
        done
      '';
in
{
  inherit
    runCommand
    writeText
    writeScript
    mkPackage
    ;
}
