"""The gate: results documents on disk (`results`) and the pure verdict `checks.compare(doc, suite)`,
which turns a document and a suite into named, pass/fail checks. No I/O in `checks`."""
