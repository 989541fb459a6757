"""Stage `rigl`: RigL from the pruning mask with the dense / liu / ours init (rigl.gin, protocol §7.1): growth by gradient magnitude every rigl.update_freq steps.
"""
from sparsebench.cli import cell_command

main = cell_command("rigl", __doc__)

if __name__ == "__main__":
    main()
