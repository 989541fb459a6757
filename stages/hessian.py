"""Stage `hessian`: Hessian spectra (protocol §9). For the Table 1 runs of hessian.methods (init hessian.init, seed hessian.seed): every eigenvalue of the loss Hessian over active weights + biases on the first hessian.images training images, at each checkpoint of hessian.steps and before / after the SET / RigL updates of hessian.updates; writes summary.csv (λ_min, λ_max, count and mass of negative eigenvalues) and eigenvalues.npz.
"""
from sparsebench.cli import analysis_command

main = analysis_command("hessian", __doc__)

if __name__ == "__main__":
    main()
