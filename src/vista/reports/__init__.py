"""Reports: figures and tables of evaluation results (matplotlib is imported here only)."""
