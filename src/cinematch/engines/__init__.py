"""Compute and storage engines behind the library: DuckDB (default), PostgreSQL, Spark."""
