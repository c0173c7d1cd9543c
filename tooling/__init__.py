"""Tools for people, not for the running service: the demo, the benchmark, the local stack they start, sample
photos and the quality harness (:mod:`tooling.eval`). No module of ``worker`` or ``producer`` imports them.

    python -m tooling.demo          # make demo
    python -m tooling.bench         # make bench
    python -m tooling.eval --help   # make eval
"""
