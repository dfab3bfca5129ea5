{
  name = "alpha";
}
