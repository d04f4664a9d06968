"""stabliab: the package behind the companion book to 'Stability as a Liability'
(arXiv 2601.18588). Notebooks narrate; this package computes."""
__version__ = "0.1.0"
