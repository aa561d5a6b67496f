"""Profiling: FLOPs and parameters from the graph, latency/throughput/memory on any backend."""
