"""Import of the real ThreeFold grids (Grid 3 grid proxy, Grid 4 node registrar), and a
seeded simulator of both.

The adapter of the grids' HTTP APIs.
See docs/architecture.md for the layers and the flow of one command.
"""
