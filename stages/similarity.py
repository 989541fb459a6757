"""Stage `similarity`: Table 3's function-similarity columns (protocol §10.4). Ensemble accuracy, disagreement over pairs and with the pruning solution, KL and JSD to it, on the test set, for each Table 3 row; writes similarity.csv.
"""
from sparsebench.cli import analysis_command

main = analysis_command("similarity", __doc__)

if __name__ == "__main__":
    main()
