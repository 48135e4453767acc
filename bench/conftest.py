"""The benchmarks that run under pytest (`python -m pytest -s bench/bench_matrix_e2e.py`) use the test fixtures:
the real Synapse, the databases and the clock."""
pytest_plugins = ["tests.conftest"]
