"""The web side of liteshift: the FastAPI app, its task sender, and the `liteshift` CLI.

Nothing under api/ imports worker.tasks, worker.celery_app or a database driver: the API
sends tasks by name and checks a source through a child process (api/source_check.py).
"""
