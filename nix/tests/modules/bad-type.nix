{
  count = "three";
}
