"""Model compression: pruning masks and schedules, sparse storage, module replacing (LCMR)."""
