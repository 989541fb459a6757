"""sparsebench: "Gradient Flow in Sparse Neural Networks and How Lottery Tickets Win" (Evci et al.,
AAAI 2022) as a library. One concept per module:

config   typed hyper-parameters of a run        data     datasets, probe batches, sampler
models   lenet5, mlp, what is prunable          masks    budgets, random/magnitude masks, invariant
init     dense, liu, ours (unit-scaled)         optim    Keras momentum SGD, LR schedules
pruning  gradual magnitude pruning              dst      SET, RigL, RigL-inverted
methods  how each method sets up a run          train    the one training loop
rundir   run directories, written and read
"""
__version__ = "0.1.0"
