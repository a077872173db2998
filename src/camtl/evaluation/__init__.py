"""Evaluation: metrics, span-QA post-processing, the evaluation loop, reports and plots."""
