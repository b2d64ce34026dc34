"""The `database_query` source: named, parameterised, read-only SQL queries from configuration.

SQL is never written by the model or the user. The queries live in a YAML file
(`data/database.yaml`, or the file named by `DATABASE_QUERIES_FILE`): each has a name, a
description, one SELECT with `:name` bound parameters, a parameter spec, a TTL, answer templates
in Japanese and English, and optionally `find` rules that pick it from a question without an LLM.
The router picks a query by name and gives its arguments; they are validated (pydantic, generated
from the spec) and bound, never interpolated. A new query needs no code.

    spec.py        the file's shape (pydantic)          loader.py      reading and checking it
    sql_checks.py  one read-only SELECT, bind names     params.py      the generated parameter model
    vocabulary.py  enum values found in text            extraction.py  the `find` rules
    answers.py     rows → JSON values → a sentence      source.py      `DatabaseSource`, the glue
    runner.py      the `QueryRunner` contract; its layers: read_only.py (+ sqlite_runner.py,
                   postgres_runner.py), seeding.py, caching.py — stacked by connect.py
"""

from retrievers.sources.database.params import DatabaseParams
from retrievers.sources.database.source import DatabaseSource, params_of
from retrievers.sources.database.sqlite_runner import sqlite_url

__all__ = ["DatabaseParams", "DatabaseSource", "params_of", "sqlite_url"]
