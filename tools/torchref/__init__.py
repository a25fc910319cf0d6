"""PyTorch references for diffuse's tests and benchmarks: fixtures_<area>.py modules feed
tools/gen_fixtures.py, bench_<area>.py modules feed tools/bench_ops_pytorch.py."""
