"""One room per claim: experiments/cN.py holds claim N's tasks (what trains and measures),
the functions that turn results into numeric tables, and the functions that write its records."""
