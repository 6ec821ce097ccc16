"""An enrichment worker as a user would have written it (seed 004): no perf-infra inside."""
