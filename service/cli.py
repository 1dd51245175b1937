"""The ``gora`` command. It starts servers (and, in later issues, workers and the client commands);
it imports neither torch nor the web stack until a command needs them, so ``gora --help`` is instant.
"""

from __future__ import annotations

import typer

app = typer.Typer(help="GoRA fine-tuning service", no_args_is_help=True)
db_app = typer.Typer(help="Database schema", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Alembic revision to reach")) -> None:
    """Apply the schema migrations to GORA_DATABASE_URL."""
    from service.migrate import upgrade
    from service.settings import get_settings

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

    from service.migrate import upgrade
    from service.settings import get_settings

    settings = get_settings()
    if settings.is_embedded_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.database_url)
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )


if __name__ == "__main__":
    app()
