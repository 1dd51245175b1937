"""The fine-tuning service, in two layers.

- ``service.core``: the domain (jobs, files, teams: models, repositories, lifecycle, the spec) and
  what it stands on (database, storage, queue, settings). No web framework: the worker imports it.
- ``service.api``: the HTTP layer on top (FastAPI app, routers, dependencies, HTTP schemas, the one
  error handler). It never imports torch or the worker.
"""
