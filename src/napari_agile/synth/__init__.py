"""The tissue simulator: multiplexed fields with ground truth for tests, benchmarks, meta-training."""
