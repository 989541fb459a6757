"""Stage `small_dense`: Table 1's Small Dense, a narrow dense LeNet5 with about the sparse parameter count (small_dense.gin, protocol §2.1).
"""
from sparsebench.cli import cell_command

main = cell_command("small_dense", __doc__)

if __name__ == "__main__":
    main()
