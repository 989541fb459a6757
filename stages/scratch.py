"""Stage `scratch`: the pruning mask with a fresh init — dense, liu or ours (scratch.gin, protocol §5, §6).

table1/table2: seed s on pruning run s's mask. table3: on the reference pruning mask, with one init for all seeds (same_init) or one per seed (diff_init).
"""
from sparsebench.cli import cell_command

main = cell_command("scratch", __doc__)

if __name__ == "__main__":
    main()
