"""Readers turn sources into chunks of `SourceRow`, values as text."""

from backfill.readers.csv import CsvOptions, ReadProgress, read_chunks, read_header

__all__ = ["CsvOptions", "ReadProgress", "read_chunks", "read_header"]
