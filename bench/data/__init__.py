"""Datasets: the immutable ratings table, dataset cards, file loaders and the synthetic generator."""
