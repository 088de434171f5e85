"""The `memoric` commands as plain functions, one per command: `command(session, arguments...)`.

`memoric/cli.py` parses the command line into these calls; the functions do the work through
the library and print (tables and JSON from `output.py`). Failures are `MemoricError`s (one line
and exit 1 in the CLI), Ctrl-C is `session.Interrupted` or `KeyboardInterrupt` (exit 130).
"""
