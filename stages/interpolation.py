"""Stage `interpolation`: Figure 5c (protocol §10.1). Training loss and accuracy along θ(α) = (1−α) θ_start + α θ_pruned under the pruning mask, for the Table 3 lottery tickets and scratch (diff. init) runs, from their init and their solution; writes points.csv (per seed) and curves.csv (mean and interpolation.interval band).
"""
from sparsebench.cli import analysis_command

main = analysis_command("interpolation", __doc__)

if __name__ == "__main__":
    main()
