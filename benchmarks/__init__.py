"""tactical's benchmarks: ratios against hand-written baselines measured in the same run."""
