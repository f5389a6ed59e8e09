"""Reading user tables into DuckDB and writing custseq's outputs."""
