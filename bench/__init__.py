"""Benchmarks: commands that print figures (see docs/benchmarks.md).

Each runs from the repository as ``python -m bench.<name>`` (``--help`` for
its options; ``--quick`` for a run of seconds):

- ``queue_overhead``: end-to-end jobs/s and latency of no-op jobs, beside the
  bare Celery and aio-pika ``baselines``;
- ``api_load``: status and results GETs under load;
- ``upload``: a large submit against a raw S3 multipart upload;
- ``scaling``: jobs/s against worker processes, latency against queue depth;
- ``pipeline``: the video pipeline against the decoder's own speed;
- ``hotspots``, ``report``, ``plots``: a py-spy profile's summary, the
  figures as Markdown tables and as PNGs.

The modules they share: ``stack`` (where a benchmark runs), ``figures``
(typed records and the one function that prints them), ``inputs`` (the
files submitted), ``machine`` (what a run ran on), and ``trace`` (a service
process with each step timed, and what-if patches).
"""
