"""Stage `rigl_inverted`: RigL growing the connections with the smallest gradients (paper §4.2, protocol §3.1), rigl.gin's settings in the rigl_inverted group.
"""
from sparsebench.cli import cell_command

main = cell_command("rigl_inverted", __doc__)

if __name__ == "__main__":
    main()
