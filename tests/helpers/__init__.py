"""The helpers the test modules share, one module per concern: `dialects` (which targets run,
what a refusal says), `reference` (a settable clock, snapshots, reference rankings), `chain` (the
migration chain, schema readers, databases built through it), `cli_process` (the CLI in a child
process), `cli_runs` (in this one), `transfer_data`, `concurrency`, `postings` and `odd_input`.
Fixtures live in conftest.py; no test module imports another.
"""
