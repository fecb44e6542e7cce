"""Storage: the warehouse (DuckDB or PostgreSQL), its lock and audit, the Parquet lake, SQL dialects."""
