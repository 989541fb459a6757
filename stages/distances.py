"""Stage `distances`: Figure 5a,b (protocol §10.2-3). L2 distance of the Table 3 lottery-ticket and scratch (diff. init) runs' inits and solutions to the pruning solution, and a 2-D MDS of all those points; writes per_seed.csv, summary.csv, pairwise.csv and mds.csv.
"""
from sparsebench.cli import analysis_command

main = analysis_command("distances", __doc__)

if __name__ == "__main__":
    main()
