"""DVC stage `report`: Tables 1–3 from the run directories, beside the paper's numbers (protocol §12)."""
from sparsebench.cli import report_command

main = report_command()

if __name__ == "__main__":
    main()
