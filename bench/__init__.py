"""Side-by-side benchmarks of Stepwise against LangGraph, and the AWS cost model (``python -m bench``).

Peers come from the ``bench`` extra (``pip install -e '.[bench]'``); nothing here is a runtime
dependency of Stepwise.
"""
