"""A benchmark harness for cold-start and meta-learning recommenders."""

__version__ = "0.1.0"
