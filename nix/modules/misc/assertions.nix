# `assertions`: conditions the configuration must satisfy; building
# `system.build.toplevel` fails with every failed assertion's message.
{ lib, ... }:
{
  options.assertions = lib.mkOption {
    type = lib.types.listOf lib.types.attrs;
    default = [ ];
    example = [
      {
        assertion = false;
        message = "you can't enable this for that reason";
      }
    ];
    description = "Each { assertion; message; } whose assertion is false stops the build with its message.";
  };
}
