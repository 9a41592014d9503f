"""videoq's shared library: what the api, worker and janitor services all import.

One concept per module: ``settings``, ``errors``, ``jobs`` (model and state
machine), ``payload``, ``topology``, ``repository``, ``broker``, ``store``,
``pipeline``. Nothing in here imports a service.
"""
