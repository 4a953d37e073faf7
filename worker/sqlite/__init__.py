"""The SQLite side: work files, the chunk loop's commit and read-back, the build of the
job's file from the work files, and what runs on it after the data."""
