"""dbluigi: a folder of SQL files as a reliable, resumable ETL pipeline."""

__version__ = "0.1.0"
