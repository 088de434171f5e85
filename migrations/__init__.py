"""memoric's migration chain: peewee-migrate files `NNN_name.py`, run by `memoric.migrations`.

Installed as the package `memoric_migrations` so a wheel can upgrade and roll back on its own.
"""
