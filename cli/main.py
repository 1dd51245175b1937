"""The ``gora`` command: the servers (``serve``, ``worker``, ``up``, ``db``, ``reconcile``) and the
commands for people (``submit``, ``jobs``, ...; cli/commands.py).

It sits beside the API and the worker, not inside either: each server command imports its side only
when it runs, so the API never loads worker code nor the worker the web stack, and ``gora --help``
loads neither (nor torch).
"""

from __future__ import annotations

import typer

from cli.commands import register as register_client_commands

app = typer.Typer(help="GoRA fine-tuning service", no_args_is_help=True)
db_app = typer.Typer(help="Database schema", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Alembic revision to reach")) -> None:
    """Apply the schema migrations to GORA_DATABASE_URL."""
    from service.core.migrate import upgrade
    from service.core.settings import get_settings

    settings = get_settings()
    if settings.is_embedded_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url, revision)
    typer.echo(f"database at revision {revision}")


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on"),
    port: int = typer.Option(8000, help="TCP port"),
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes"),
) -> None:
    """Run the API server. An embedded SQLite database is migrated first; a shared database is
    migrated once by ``gora db upgrade`` (the compose file's migration service), not by each server.
    """
    import uvicorn

    from service.core.migrate import upgrade
    from service.core.settings import get_settings

    settings = get_settings()
    if settings.is_embedded_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.database_url)
    uvicorn.run(
        "service.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )


@app.command("worker")
def worker(
    pool: str = typer.Option("cpu", help="GPU pool to serve (queue gpu.<pool>), or cpu"),
    gpus: str | None = typer.Option(None, help="CUDA devices of this worker, e.g. 0 or 0,1"),
    reconcile: bool = typer.Option(True, help="run the reconciler beside the worker"),
    loglevel: str = typer.Option("INFO", help="Celery log level"),
) -> None:
    """Run a Celery worker that trains one job at a time on this pool's queue."""
    from worker.cli import start_worker

    start_worker(pool, gpus, reconcile, loglevel)


@app.command("reconcile")
def reconcile() -> None:
    """One reconciler pass: re-send lost queued jobs, take back jobs of dead workers."""
    from worker.cli import reconcile_now

    typer.echo(reconcile_now())


@app.command("up")
def up(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on"),
    port: int = typer.Option(8000, help="TCP port"),
) -> None:
    """Run everything on this machine: the API and one CPU worker (SQLite and the filesystem
    broker under GORA_DATA_DIR unless configured otherwise). Ctrl-C stops both."""
    from cli.embedded import run_embedded

    run_embedded(host, port)


# The commands for people (submit, jobs, events, ...): HTTP clients of a running server.
register_client_commands(app)

if __name__ == "__main__":
    app()
