"""Stage `gradient_flow`: Figures 2 and 3 (protocol §8). Masked gradient norm over training (mean / std / min / max over seeds) of every cell, and its change at every SET / RigL / RigL-inverted mask update, from the runs' histories; writes curves.csv, updates.csv and grad_norm_<table>.csv (for dvc plots).
"""
from sparsebench.cli import analysis_command

main = analysis_command("gradient_flow", __doc__)

if __name__ == "__main__":
    main()
