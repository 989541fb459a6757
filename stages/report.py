"""DVC stage `report`: Tables 1–3 from the run directories, beside the paper's numbers (protocol §12)."""
from sparsebench.cli import report as main

if __name__ == "__main__":
    main()
