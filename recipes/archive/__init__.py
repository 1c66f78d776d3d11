"""Archive jobs: a folder or a CSV of recordings profiled into a parquet table on Ray Data
(profile_archive.py). inputs.py (the files to read, resume, the parquet parts), rows.py (the
schema and the worker that profiles a batch of files), job.py (Ray: the only module importing it)."""
