"""Stage `dense`: Table 1's Baseline, the dense LeNet5 (dense.gin, protocol §3.1), one run per seed.
"""
from sparsebench.cli import cell_command

main = cell_command("dense", __doc__)

if __name__ == "__main__":
    main()
