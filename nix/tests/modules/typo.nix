{
  enable = true;
  nested.deep.valeu = 2;
}
