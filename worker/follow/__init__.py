"""Follow mode: after the copy, keep the built file in step with the source's committed
changes until cutover publishes it (changes.py the events, apply.py into SQLite,
position.py the file's own record, follower.py the loop, cutover.py the start and the end).
"""
