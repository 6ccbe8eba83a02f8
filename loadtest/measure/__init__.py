"""Measuring: exact latency histograms, process-tree CPU and memory, the servers' own metrics."""
