"""``make scale``: what the index costs and how it holds as it grows to 10k, 100k and 1M originals.

:mod:`tooling.scale.inputs` makes (and caches) the originals and uploads from the corpus's pictures;
:mod:`tooling.scale.run` fills an index with N of them and measures it. ``python -m tooling.scale`` runs the sizes
and writes the figures (JSON and a Markdown table) for BENCHMARKS.md and the README's sizing table::

    python -m tooling.scale --sizes 10000,100000,1000000 --out docs/scale
"""
