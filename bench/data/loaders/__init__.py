"""Parsers for the dataset cards in ``datasets/``: locating, downloading, checking, parsing and caching
rating files. The parsers are registered lazily in :mod:`bench.data.cards` by ``"module:attr"`` name."""
