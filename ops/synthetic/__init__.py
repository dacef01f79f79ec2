"""Synthetic data: test videos made on demand (composites of several feeds, single feeds, hard negatives)
and the recipes of the layout sets, kept in the repository; the media is never committed.

Not indexing: the indexer never imports this. The CLI (``sludge make-composite``,
``sludge eval build-layout-set``), the tests and the benchmarks do.
"""
