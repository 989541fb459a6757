"""Stage `signal_propagation`: Figure 1c (protocol §11). Std of LeNet5's output at init for the dense / liu / ours inits over signal_propagation.sparsities, with the notebook's uneven random masks and with uniform ones, linear and ReLU output; writes repeats.csv and curves.csv. Needs no training runs.
"""
from sparsebench.cli import analysis_command

main = analysis_command("signal_propagation", __doc__)

if __name__ == "__main__":
    main()
