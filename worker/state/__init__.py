"""Where a job's state lives: Redis mirrors progress (store, lease); the volume holds what
survives losing Redis (jobfiles, manifest) and the published targets (targets)."""
