"""Memory benchmarks (``python -m bench.memory``): retrieval quality, query latency, STM tokens per turn."""
