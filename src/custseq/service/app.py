"""The app factory: one model loaded at start-up, routes that parse, call the score pipeline and format.

Status codes: 400 malformed JSON; 401 no API key, 403 a wrong one; 413 a body, batch or customer over a limit
(the message names the setting); 422 a field that breaks the request schema (``detail`` lists each with its path)
or data the pipeline refuses (its message); 503 a scoring call past ``request_timeout_s``; 500 anything else, with
a generic message, after which the server keeps serving.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import torch
from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from custseq.config.service import MODEL_ENV, ServiceSettings
from custseq.errors import ConfigError, CustseqError
from custseq.pipelines.outputs import PredictRun
from custseq.service.frames import embedding_rows, not_scored, prediction_rows
from custseq.service.limits import BodyLimit
from custseq.service.schemas import EmbedResponse, ModelInfo, Prediction, ScoreRequest, ScoreResponse, Status
from custseq.service.security import key_checker
from custseq.service.served import ServedModel
from custseq.service.telemetry import Telemetry
from custseq.version import __version__

log = logging.getLogger(__name__)


def create_app(model_dir: Path | str, settings: ServiceSettings) -> FastAPI:
    """Build the service around the model in ``model_dir``, loaded now, once.

    Raises
    ------
    ArtifactError
        If the model folder is missing, incomplete or corrupted.
    """
    served = ServedModel.load(model_dir, threads=settings.threads)
    telemetry = Telemetry.create()
    app = FastAPI(
        title="custseq", version=__version__,
        description="Churn probability, value with interval, P(alive), segment and next actions per customer, "
        "from the model in " + Path(model_dir).name + ". Send the X-API-Key header.",
    )  # fmt: skip
    known_paths = {"/health", "/ready", "/model", "/score", "/embed", "/metrics"}

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        endpoint = request.url.path if request.url.path in known_paths else "other"
        telemetry.observe(endpoint, response.status_code, time.perf_counter() - started)
        return response

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # outermost: its 413s are counted too
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    _add_routes(app, served, settings, telemetry)
    return app


def app_from_environment() -> FastAPI:
    """The app uvicorn's workers build (``custseq serve`` passes the model and settings in the environment).

    The worker process is the app's own, so torch's threads are set here to ``settings.threads`` (as the app's
    DuckDB connection's): a worker scores one small request at a time, and more threads only spin; more workers
    use more cores. The numbers stay those of ``custseq score`` (tests/service/test_consistency.py).
    """
    model_dir = os.environ.get(MODEL_ENV)
    if not model_dir:
        raise ConfigError(f"set {MODEL_ENV} to the model folder (custseq serve --model DIR does)")
    settings = ServiceSettings.from_environment(os.environ)
    torch.set_num_threads(settings.threads)
    return create_app(model_dir, settings)


def _add_routes(app: FastAPI, served: ServedModel, settings: ServiceSettings, telemetry: Telemetry) -> None:
    keyed = [Depends(key_checker(settings))]
    limiter = anyio.CapacityLimiter(1)  # one scoring call at a time per worker: it uses every core already
    fields = list(Prediction.model_fields)

    @app.get("/health", tags=["status"])
    def health() -> Status:
        """Liveness: the process answers."""
        return Status(status="ok")

    @app.get("/ready", tags=["status"])
    def ready() -> Status:
        """Readiness: the model is loaded (it is loaded before the app exists)."""
        return Status(status="ready")

    @app.get("/model", dependencies=keyed, tags=["model"])
    def model_info() -> ModelInfo:
        """The served model: version, training cutoffs, horizon, validation metrics, input and output fields."""
        return served.info(fields)

    @app.post("/score", dependencies=keyed, tags=["scores"], responses=_ERRORS)
    async def score(request: ScoreRequest) -> ScoreResponse:
        """Score a batch of customers as of a date: the fields of predictions.csv, per customer."""
        run = await _scored(request)
        telemetry.customers_scored.inc(len(run.predictions))
        return ScoreResponse(
            as_of=run.as_of, horizon_days=run.metrics.horizon_days,
            predictions=[Prediction(**row) for row in prediction_rows(run.predictions)],
            not_scored=not_scored(request, run.predictions["customer_id"]),
            unknown_values={k: v for k, v in (run.metrics.unknown_values or {}).items() if v},
        )  # fmt: skip

    @app.post("/embed", dependencies=keyed, tags=["scores"], responses=_ERRORS)
    async def embed(request: ScoreRequest) -> EmbedResponse:
        """The customers' embeddings (embeddings.parquet's vectors) as of a date."""
        run = await _scored(request)
        telemetry.customers_scored.inc(len(run.embeddings))
        rows = embedding_rows(run.embeddings)
        return EmbedResponse.model_validate(
            {"as_of": run.as_of, "dimension": len(rows[0]["embedding"]) if rows else 0, "embeddings": rows,
             "not_scored": not_scored(request, run.embeddings["customer_id"])}
        )  # fmt: skip

    @app.get("/metrics", dependencies=keyed, tags=["status"])
    def metrics() -> Response:
        """Prometheus text format: requests, latencies, errors, customers scored (this worker's)."""
        return Response(generate_latest(telemetry.registry), media_type=CONTENT_TYPE_LATEST)

    async def _scored(request: ScoreRequest) -> PredictRun:
        _check_limits(request, settings)
        try:
            with anyio.fail_after(settings.request_timeout_s):
                return await anyio.to_thread.run_sync(served.score, request, limiter=limiter, abandon_on_cancel=True)
        except TimeoutError:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"scoring took longer than the limit of {settings.request_timeout_s:g} s (request_timeout_s); "
                "retry, or send fewer customers per request",
            ) from None
        except CustseqError as e:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
        except Exception as e:
            # the message may quote customer data: log where it failed, never what it read
            log.error("unexpected %s while scoring %d customer(s):\n%s", type(e).__name__, len(request.customers),
                      "".join(traceback.format_tb(e.__traceback__)))  # fmt: skip
            raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error while scoring") from None


def _check_limits(request: ScoreRequest, settings: ServiceSettings) -> None:
    """413 naming the setting when a batch or one customer's rows exceed it."""
    if len(request.customers) > settings.max_customers:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"{len(request.customers)} customers in one request; the limit is {settings.max_customers} "
            "(max_customers): split the batch",
        )
    for i, c in enumerate(request.customers):
        for table, limit, name in (
            (c.transactions, settings.max_transactions_per_customer, "max_transactions_per_customer"),
            (c.events or [], settings.max_events_per_customer, "max_events_per_customer"),
        ):
            if len(table) > limit:
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    f"customers[{i}] has {len(table)} rows; the limit is {limit} ({name}): send the latest ones",
                )


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Each bad field's path, message and type; 400 for a body that is not JSON. The input is never echoed."""
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    code = 400 if any(e["type"] == "json_invalid" for e in errors) else 422
    return JSONResponse({"detail": errors}, status_code=code)


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body is not JSON"},
    401: {"description": "No X-API-Key header"},
    403: {"description": "The X-API-Key is not valid"},
    413: {"description": "A body, batch or customer over a limit (the message names it)"},
    422: {"description": "A field breaks the schema (each listed with its path), or the pipeline refuses the data"},
    503: {"description": "Scoring took longer than request_timeout_s"},
}
