# Imported from two places: must count once.
{
  list = [ "imported-once" ];
}
