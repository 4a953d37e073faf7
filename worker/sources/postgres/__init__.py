"""PostgreSQL as a source: connect, reflect, translate to the plan, stream in key order."""
