"""Import of the real ThreeFold grids (Grid 3 grid proxy, Grid 4 node registrar), and a
seeded simulator of both."""
