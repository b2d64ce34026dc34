"""`make bench`: performance benchmarks of voicerag (never part of the tests).

`python -m benchmarks [NAME...] [--quick]`. Each benchmark prints a table and writes its figures
to `benchmarks/results/<name>.json`; generated inputs live in `benchmarks/.data/`. Both are
gitignored and created at run time.
"""
