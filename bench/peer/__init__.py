"""The peer: videoq's three endpoints as a team would write them in a day
on FastAPI and Celery (issue 17), the baseline of the queue benchmark.

- ``bench/peer/app.py``: FastAPI; ``UploadFile`` -> boto3 ``upload_fileobj``
  -> a psycopg row insert -> ``analyze.delay(job_id)``; status and results
  read the row and the object.
- ``bench/peer/tasks.py``: the Celery app and its one task, which downloads
  the input with boto3, runs videoq's own ``VideoFilePipelineService`` (the
  same analysis functions), uploads the results JSON and updates the row.
- ``bench/peer/stack.py``: starts both as processes on a fresh vhost,
  database and bucket (for ``bench.queue_overhead`` and ``bench.peer_faults``).

Configured from the environment, as such a service is (``common.py``).
Deliberately plain: no outbox, no lease, no janitor, no dead-letter queue;
what that costs under faults is what ``bench.peer_faults`` measures.
"""
