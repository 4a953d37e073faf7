"""liteshift worker: copies a source database into SQLite files on the data volume.

Modules that the API also imports (config, errors, state, names, sealing, redact) import no
database driver; the ones that talk to sources (pg_source, plan, chunks, finalize) do.
"""
