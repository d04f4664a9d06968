"""The machine's calibration figure (stabliab.calibrate): matmul rate and one fixed training step.

    .venv/bin/python bench/calibrate.py [--json] [--threads 2]

Quote it beside every timing; budgets are for the reference machine (REFERENCE_GFLOPS)."""
from stabliab.calibrate import main

if __name__ == "__main__":
    raise SystemExit(main())
