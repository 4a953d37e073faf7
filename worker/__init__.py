"""liteshift worker: copies a source database into SQLite files on the data volume.

Modules that the API also imports (worker/core, worker/state, worker/jobs/control,
worker/sources/sealing) import no database driver; the ones that talk to sources
(worker/sources/<kind>/, plan) do.
"""
