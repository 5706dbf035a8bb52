"""Evaluation: metrics, scoring a batch of predictions, timing, and the learner contract check."""
