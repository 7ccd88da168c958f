"""Scoring: windows x runners -> per-token statistics (`tokenstats`) in lanes (`lanes`), summaries
and intervals (`metrics`), the per-window resume journal (`journal`) and shard merging (`merge`).
Returns data only."""
