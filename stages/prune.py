"""Stage `prune`: gradual magnitude pruning to the table's sparsity (prune.gin, protocol §4), one run per seed.

Its final masks and saved weights are where lottery, scratch, SET, RigL and prune-restart start.
"""
from sparsebench.cli import cell_command

main = cell_command("prune", __doc__)

if __name__ == "__main__":
    main()
