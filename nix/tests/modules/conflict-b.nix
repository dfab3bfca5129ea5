{
  name = "beta";
}
