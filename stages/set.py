"""Stage `set`: SET from the pruning mask with the dense / liu / ours init (set.gin, protocol §7.1): random growth every set.update_freq steps.
"""
from sparsebench.cli import cell_command

main = cell_command("set", __doc__)

if __name__ == "__main__":
    main()
