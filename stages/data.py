"""DVC stage `data`: the dataset of params.yaml as IDX files in <data.root>/<data.dataset>/ (protocol §1.1)."""
from sparsebench.cli import data as main

if __name__ == "__main__":
    main()
