"""Results: the store, analysis as DataFrames, export, the regression gate, reports and terminal tables."""
