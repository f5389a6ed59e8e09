"""``custseq serve``: the HTTP API (``custseq.service``) in front of a saved model, run by uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from custseq.cli.app import app, console, fails_cleanly
from custseq.config.service import MODEL_ENV, ServiceSettings
from custseq.errors import ConfigError

# uvicorn imports the app by name (it must, to start several workers): the CLI never imports the service itself.
APP_FACTORY = "custseq.service:app_from_environment"


@app.command("serve")
@fails_cleanly
def serve_cmd(
    model: Annotated[Path, typer.Option("--model", "-m", help="Model directory written by predict (<out>/model).")],
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1, CUSTSEQ_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000, CUSTSEQ_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1, CUSTSEQ_WORKERS).")] = None,
) -> None:
    """Serve the model over HTTP: POST /score and /embed, GET /model, /health, /ready, /metrics.

    API keys come from CUSTSEQ_API_KEYS (comma-separated) or CUSTSEQ_API_KEY_FILE (SHA-256 hashes, one a line);
    without any, the service only listens on a loopback address. Limits: CUSTSEQ_MAX_BODY_BYTES,
    CUSTSEQ_MAX_CUSTOMERS, CUSTSEQ_MAX_TRANSACTIONS_PER_CUSTOMER, CUSTSEQ_MAX_EVENTS_PER_CUSTOMER,
    CUSTSEQ_REQUEST_TIMEOUT_S.
    """
    from custseq.models.finetune import load_churn_value
    from custseq.pipelines.predict import NEXT_EVENT_DIR
    from custseq.pipelines.score import load_item_proposer, refuse_partial_run

    settings = ServiceSettings.from_environment(os.environ, host=host, port=port, workers=workers)
    refuse_partial_run(model)  # every worker loads the model: a broken one is one line here, not a traceback each
    load_churn_value(model)
    load_item_proposer(model / NEXT_EVENT_DIR)
    try:
        import fastapi  # noqa: F401  (the workers import it)
        import uvicorn
    except ImportError:
        raise ConfigError('custseq serve needs the service extra: pip install "custseq[service]"') from None
    os.environ[MODEL_ENV] = str(model.absolute())
    for name, value in (("HOST", settings.host), ("PORT", settings.port), ("WORKERS", settings.workers)):
        os.environ[f"CUSTSEQ_{name}"] = str(value)  # the workers read the same settings
    keys = f"{len(settings.key_hashes)} API key(s)" if settings.keys_required else "no API keys (loopback only)"
    console.print(
        f"serving {model} on http://{settings.host}:{settings.port} with {settings.workers} worker(s), {keys}"
    )
    uvicorn.run(
        APP_FACTORY, factory=True, host=settings.host, port=settings.port, workers=settings.workers,
        log_level="info", timeout_keep_alive=5, timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
    )  # fmt: skip
