"""The source-neutral core: settings, errors, logging, the plan model, type-rule machinery,
identifiers, checksums and value converters. Imports no database driver and no Celery."""
