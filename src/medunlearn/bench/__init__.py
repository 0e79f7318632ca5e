"""The benchmark runner: requests × methods, beside the vanilla model and the retrain oracle.

Layout of a run folder (:mod:`medunlearn.bench.run_folder`, layout 2)::

    bench_config.json          the resolved configuration (a rerun must match it)
    models/vanilla/            the fine-tuned model (reused when its recipe and data match)
    models/retrain-<request>/  the request's retrain oracle, with cost.json
    cells/<request>/<row>.json one finished result row (vanilla, retrain, each method;
                               ``<method>@<i>`` for grid point i on a validation request)
    metrics.json  report.html  plots/*.png

Each idea has its module:

- :mod:`~medunlearn.bench.config` — :class:`BenchConfig`, the typed configuration;
- :mod:`~medunlearn.bench.requests` — the requests a bench scores (PROTOCOL.md §5);
- :mod:`~medunlearn.bench.run_folder` — the folder: its configuration check, the models
  and cells it reuses, and its layout (with the migration of older folders);
- :mod:`~medunlearn.bench.cells` — what one cell (an oracle, the vanilla evaluation, a
  method run) does, in whichever process the executor chose;
- :mod:`~medunlearn.bench.selection` — the grid search on validation requests;
- :mod:`~medunlearn.bench.run` — :class:`Bench`: orchestration and aggregation into
  metrics.json.

The package imports nothing itself: import from the module that holds the idea.
"""
