"""The engine: suites, the runner and its cells, executors, tuning and the regression gate's runs."""
