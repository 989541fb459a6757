"""Stage `prune_restart`: Table 3's Prune Restart: the pruning solution trained again with a fresh optimizer and LR schedule, seeds = data orders (protocol §5).
"""
from sparsebench.cli import cell_command

main = cell_command("prune_restart", __doc__)

if __name__ == "__main__":
    main()
