"""Stage `lottery`: lottery tickets (lottery.gin, protocol §5): the pruning mask on the pruning run's weights after lottery.rewind_step steps.

table1: seed s from pruning run s. table3: all seeds from pruning run table3.reference_seed, seeds = data orders.
"""
from sparsebench.cli import cell_command

main = cell_command("lottery", __doc__)

if __name__ == "__main__":
    main()
