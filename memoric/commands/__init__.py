"""The `memoric` commands as plain functions, one per command: `command(session, arguments...)`.

`memoric/cli.py` parses the command line into these calls; the functions do the work through
the library and print (tables and JSON from `output.py`). Failures are `MemoricError`s (one line
and exit 1 in the CLI); Ctrl-C, SIGTERM and SIGHUP are `KeyboardInterrupt`s (`stopping`: exit
128 + the signal's number).
"""
