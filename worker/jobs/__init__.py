"""Job control, one module per step: submit and look (control), plan, copy, finalize,
verify, and the recovery of work whose worker died (recover, reaper)."""
