"""Ingestion: batches into bronze exactly once, with quarantine and an audit row; the TMDB source."""
