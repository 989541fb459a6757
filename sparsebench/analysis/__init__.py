"""The paper's analyses, each a function over trained models or run directories.

One module per analysis, named after the paper's concept:

=======================  ===================================================================
``gradient_flow``        Figures 2, 3: gradient norm over training; Δ norm at mask updates (§8)
``signal_propagation``   Figure 1c: output std at init over sparsities (§11)
``hessian``              Hessian spectra over active weights + biases, exact or Lanczos (§9)
``interpolation``        Figure 5c: loss / accuracy along θ(α) to the pruning solution (§10.1)
``distances``            Figure 5a,b: L2 distances to the pruning solution, MDS (§10.2-3)
``similarity``           Table 3: ensembles, disagreement, KL, JSD (§10.4)
``suite``                which runs of the study feed each analysis, and the files each writes
=======================  ===================================================================

(§ = protocol section.)
"""
