"""The ``gora`` commands for people: submit jobs, watch them, fetch their reports and adapters.

They talk to a running server over HTTP (``cli.client``), configured by ``GORA_API_URL``
(default http://127.0.0.1:8000), ``GORA_API_KEY`` and, for the admin commands, ``GORA_ADMIN_TOKEN``.
A failure prints one line (the server's message and the offending field) and exits 1, never a
traceback. Nothing here imports torch; httpx and rich load only when a command runs.
"""

from __future__ import annotations

import json
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from gora.report_table import allocation_table

if TYPE_CHECKING:
    from cli.client import Client

F = TypeVar("F", bound=Callable[..., Any])
FINISHED = {"succeeded", "failed", "cancelled"}


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(1)


@contextmanager
def _client() -> Iterator[Client]:
    from cli.client import Client, ClientError

    client = Client.from_env()
    try:
        yield client
    except ClientError as exc:
        raise _fail(str(exc)) from None
    finally:
        client.close()


def _handles_errors(command: F) -> F:
    """Turns the expected failures (bad spec file, missing file) into one line and exit 1."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (OSError, ValueError) as exc:
            raise _fail(f"error: {exc}") from None

    return run  # type: ignore[return-value]


def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr, soft_wrap=True)
    if not console.is_terminal:
        # Piped or captured: wide enough that tables never truncate ids (80 columns would).
        console = Console(stderr=stderr, soft_wrap=True, width=max(console.width, 160))
    return console


def _when(unix: int | None) -> str:
    if not unix:
        return "-"
    from datetime import datetime

    return datetime.fromtimestamp(unix).strftime("%Y-%m-%d %H:%M:%S")


# --- submit ---------------------------------------------------------------------------------


def _load_spec(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix.lower() == ".json":
        spec = json.loads(text)
    else:
        import yaml

        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path} must hold a mapping (the job spec), not {type(spec).__name__}")
    return spec


def _file_id(client: Client, value: str, field: str) -> str:
    """A file id as given, or the id of the local file at ``value`` once uploaded and checked."""
    path = Path(value).expanduser()
    if not path.is_file():
        if value.startswith("file-"):
            return value
        raise ValueError(f"{field}: {value} is neither a local file nor a file id (file-...)")
    uploaded = client.upload_file(path)
    err = sys.stderr
    rows = uploaded.get("rows")
    summary = f"{path.name}: {uploaded['id']} {uploaded['status']}"
    if rows is not None:
        summary += f", {rows} rows"
    if uploaded.get("format"):
        summary += f" ({uploaded['format']})"
    print(summary, file=err)
    errors = uploaded.get("errors") or []
    for line_error in errors:
        where = f"line {line_error.get('line')}"
        if line_error.get("field"):
            where += f", {line_error['field']}"
        print(f"  {where}: {line_error.get('message')}", file=err)
    if uploaded["status"] != "processed":
        raise _fail(f"error: {path} was rejected ({len(errors)} line errors); fix it and resubmit")
    return uploaded["id"]


def submit(
    spec_file: str | None = typer.Argument(None, help="Job spec as YAML or JSON (the API's body)"),
    model: str | None = typer.Option(None, help="Bundled alias or a model under GORA_MODELS_DIR"),
    training_file: str | None = typer.Option(
        None, help="A local JSONL file (uploaded first) or a file id"
    ),
    validation_file: str | None = typer.Option(None, help="A local JSONL file or a file id"),
    adapter_type: str | None = typer.Option(None, help="gora or lora"),
    r_ref: int | None = typer.Option(None, help="Reference rank (the LoRA budget)"),
    target_modules: str | None = typer.Option(None, help="Comma-separated, e.g. q_proj,v_proj"),
    gamma: float | None = typer.Option(None, help="GoRA's init scale"),
    epochs: int | None = typer.Option(None, help="n_epochs"),
    batch_size: int | None = typer.Option(None, help="Effective batch size"),
    lr_multiplier: float | None = typer.Option(None, help="learning_rate_multiplier"),
    max_steps: int | None = typer.Option(None, help="Stop after this many steps"),
    pool: str | None = typer.Option(None, help="GPU pool (one of the server's GORA_POOLS)"),
    gpus: int | None = typer.Option(None, help="GPUs for the job"),
    suffix: str | None = typer.Option(None, help="Suffix of the fine-tuned model's name"),
    seed: int | None = typer.Option(None, help="Random seed"),
    priority: int | None = typer.Option(None, help="0-9, higher runs first"),
    metadata: list[str] | None = typer.Option(None, help="KEY=VALUE, repeatable"),  # noqa: B008
) -> None:
    """Submit a fine-tuning job; prints its id. Flags override the spec file's fields."""
    spec = _load_spec(Path(spec_file)) if spec_file else {}
    hyper = dict(spec.get("hyperparameters") or {})
    adapter = dict(spec.get("adapter") or {})
    gpu = dict(spec.get("gpu") or {})
    top = {
        "model": model,
        "training_file": training_file,
        "validation_file": validation_file,
        "suffix": suffix,
        "seed": seed,
        "priority": priority,
    }
    spec.update({k: v for k, v in top.items() if v is not None})
    modules = (
        [m.strip() for m in target_modules.split(",") if m.strip()] if target_modules else None
    )
    for target, values in (
        (
            adapter,
            {"type": adapter_type, "r_ref": r_ref, "target_modules": modules, "gamma": gamma},
        ),
        (
            hyper,
            {
                "n_epochs": epochs,
                "batch_size": batch_size,
                "learning_rate_multiplier": lr_multiplier,
                "max_steps": max_steps,
            },
        ),
        (gpu, {"pool": pool, "count": gpus}),
    ):
        target.update({k: v for k, v in values.items() if v is not None})
    for name, section in (("hyperparameters", hyper), ("adapter", adapter), ("gpu", gpu)):
        if section:
            spec[name] = section
    if metadata:
        pairs = dict(spec.get("metadata") or {})
        for item in metadata:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--metadata {item!r}: use KEY=VALUE")
            pairs[key] = value
        spec["metadata"] = pairs
    for field in ("model", "training_file"):
        if not spec.get(field):
            raise ValueError(
                f"{field} is required: give --{field.replace('_', '-')} or a spec file"
            )
    with _client() as client:
        spec["training_file"] = _file_id(client, str(spec["training_file"]), "training_file")
        if spec.get("validation_file"):
            spec["validation_file"] = _file_id(
                client, str(spec["validation_file"]), "validation_file"
            )
        job = client.create_job(spec)
    typer.echo(job["id"])


# --- jobs, status, cancel -------------------------------------------------------------------


def jobs(
    limit: int = typer.Option(20, min=1, max=100, help="How many, newest first"),
    after: str | None = typer.Option(None, help="Page after this job id"),
) -> None:
    """List your team's jobs, newest first."""
    from rich.table import Table

    with _client() as client:
        page = client.list_jobs(limit, after)
    table = Table(title="fine-tuning jobs")
    for column in ("id", "status", "phase", "model", "adapter", "pool", "created", "finished"):
        table.add_column(column, no_wrap=column == "id")
    for job in page["data"]:
        adapter = job.get("adapter") or {}
        kind = f"{adapter.get('type', '-')} r={adapter.get('r_ref', '-')}"
        table.add_row(
            job["id"],
            _styled_status(job["status"]),
            job.get("phase") or "-",
            job["model"],
            kind,
            (job.get("gpu") or {}).get("pool", "-"),
            _when(job.get("created_at")),
            _when(job.get("finished_at")),
        )
    _console().print(table)
    if page.get("has_more"):
        typer.echo(f"more: gora jobs --after {page['data'][-1]['id']}")


def _styled_status(status: str) -> str:
    style = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}
    return f"[{style[status]}]{status}[/]" if status in style else status


def status(
    job_id: str = typer.Argument(..., help="ftjob-..."),
    as_json: bool = typer.Option(False, "--json", help="The job as the API returns it"),
) -> None:
    """A job's status, phase, settings and result."""
    with _client() as client:
        job = client.get_job(job_id)
    if as_json:
        typer.echo(json.dumps(job, indent=2))
        return
    adapter = job.get("adapter") or {}
    hyper = job.get("hyperparameters") or {}
    lines = [
        ("id", job["id"]),
        ("status", job["status"] + (f" ({job['phase']})" if job.get("phase") else "")),
        ("model", job["model"]),
        ("training file", job["training_file"]),
        ("adapter", ", ".join(f"{k}={v}" for k, v in adapter.items() if k != "seed") or "-"),
        ("hyperparameters", ", ".join(f"{k}={v}" for k, v in hyper.items()) or "-"),
        ("pool", f"{job['gpu']['pool']} x{job['gpu']['count']}"),
        ("created", _when(job.get("created_at"))),
        ("started", _when(job.get("started_at"))),
        ("finished", _when(job.get("finished_at"))),
    ]
    if job.get("trained_tokens"):
        lines.append(("trained tokens", f"{job['trained_tokens']:,}"))
    if job.get("fine_tuned_model"):
        lines.append(("fine-tuned model", job["fine_tuned_model"]))
    if job.get("error"):
        error = job["error"]
        param = f" [param: {error['param']}]" if error.get("param") else ""
        lines.append(("error", f"{error['code']}: {error['message']}{param}"))
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        typer.echo(f"{name:<{width}}  {value}")


def cancel(job_id: str = typer.Argument(..., help="ftjob-...")) -> None:
    """Cancel a job: a queued one at once, a running one at its next step."""
    with _client() as client:
        job = client.cancel_job(job_id)
    typer.echo(f"{job['id']} {job['status']}")


# --- events ---------------------------------------------------------------------------------


def _total_steps(job: dict[str, Any], data: dict[str, Any]) -> float | None:
    """The run's length in steps, when it can be known: max_steps, else from step / epoch."""
    hyper = job.get("hyperparameters") or {}
    if isinstance(hyper.get("max_steps"), int):
        return hyper["max_steps"]
    epoch, step, epochs = data.get("epoch"), data.get("step"), hyper.get("n_epochs")
    if isinstance(epochs, int) and epoch and step:
        return max(step, round(step / epoch * epochs))
    return None


def _event_line(event: dict[str, Any]) -> str:
    level = event.get("level", "info")
    style = {"warn": "yellow", "error": "red"}.get(level)
    text = event["message"]
    return f"[{style}]{text}[/]" if style else text


def _follow(client: Client, job_id: str) -> str:
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    job = client.get_job(job_id)
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total}"),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
    ]
    final = job["status"]
    with Progress(*columns, console=_console()) as bar:
        task = bar.add_task("training", total=None, loss="-")
        for kind, data in client.stream_events(job_id):
            if kind == "end":
                final = data.get("status") or final
                break
            values = data.get("data") or {}
            if kind == "metrics" and isinstance(values.get("step"), int):
                loss = values.get("loss")
                bar.update(
                    task,
                    completed=values["step"],
                    total=_total_steps(job, values),
                    loss=f"{loss:.4f}" if isinstance(loss, (int, float)) else "-",
                )
                if "valid_loss" not in values:
                    continue
            level = data.get("level", "info")
            style = {"warn": "yellow", "error": "red"}.get(level)
            message = escape(data.get("message", ""))
            bar.console.print(f"[{style}]{message}[/]" if style else message)
    return final


def events(
    job_id: str = typer.Argument(..., help="ftjob-..."),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Stream until the job finishes, with a progress bar"
    ),
    limit: int = typer.Option(50, min=1, max=100, help="Without --follow: the latest N"),
) -> None:
    """A job's events, oldest first; --follow streams them live (progress bar, live loss)."""
    from rich.markup import escape

    console = _console()
    with _client() as client:
        if not follow:
            for event in client.list_events(job_id, limit):
                when = _when(event.get("created_at"))
                console.print(
                    f"[dim]{when}[/] {_event_line({**event, 'message': escape(event['message'])})}"
                )
            return
        final = _follow(client, job_id)
    typer.echo(f"{job_id} {final}")
    if final == "failed":
        raise typer.Exit(1)


# --- allocation and download ----------------------------------------------------------------


def allocation(
    job_id: str = typer.Argument(..., help="ftjob-..."),
    png: str | None = typer.Option(None, help="Also save the heatmap (PNG) here"),
    as_json: bool = typer.Option(False, "--json", help="gora_allocation.json as is"),
) -> None:
    """The rank GoRA gave each layer and module (after probing)."""
    with _client() as client:
        report = client.allocation(job_id)
        image = client.allocation_png(job_id) if png else None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _console().print(allocation_table(report))
    if png and image is not None:
        Path(png).write_bytes(image)
        typer.echo(f"heatmap saved to {png}", err=as_json)


def download(
    job_id: str = typer.Argument(..., help="ftjob-..."),
    fmt: str = typer.Option("peft", "--format", help="peft (per-module ranks) or uniform"),
    output_dir: str = typer.Option(".", "-o", "--output", help="Directory to extract into"),
) -> None:
    """Download a succeeded job's adapter and extract it (into DIR/<job id>-<format>/)."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "adapter.tar.gz"
        with _client() as client:
            client.download_adapter(job_id, fmt, archive)
        with tarfile.open(archive, "r:gz") as tar:
            tops = {Path(member.name).parts[0] for member in tar.getmembers() if member.name}
            tar.extractall(output, filter="data")
    for top in sorted(tops):
        typer.echo(str(output / top))


# --- admin ----------------------------------------------------------------------------------

team_app = typer.Typer(help="Teams (admin: GORA_ADMIN_TOKEN)", no_args_is_help=True)
key_app = typer.Typer(help="API keys (admin: GORA_ADMIN_TOKEN)", no_args_is_help=True)


@team_app.command("create")
def team_create(
    name: str = typer.Argument(..., help="Team name"),
    max_running_jobs: int | None = typer.Option(None, help="Jobs it may run at once"),
) -> None:
    """Create a team; prints its id."""
    with _client() as client:
        team = client.create_team(name, max_running_jobs)
    typer.echo(team["id"])


@key_app.command("create")
def key_create(
    team_id: str = typer.Argument(..., help="team-..."),
    name: str | None = typer.Option(None, help="A label for the key"),
) -> None:
    """Create an API key for a team; prints the key (shown once) and its id to stderr."""
    with _client() as client:
        key = client.create_key(team_id, name)
    typer.echo(f"key id {key['id']} (revoke: gora key delete {key['id']})", err=True)
    typer.echo(key["key"])


@key_app.command("delete")
def key_delete(key_id: str = typer.Argument(..., help="The key's id")) -> None:
    """Revoke an API key."""
    with _client() as client:
        client.delete_key(key_id)
    typer.echo(f"{key_id} deleted")


def register(app: typer.Typer) -> None:
    """Adds the client commands to the ``gora`` app."""
    for command in (submit, jobs, status, events, allocation, download, cancel):
        app.command(command.__name__)(_handles_errors(command))
    app.add_typer(team_app, name="team")
    app.add_typer(key_app, name="key")
