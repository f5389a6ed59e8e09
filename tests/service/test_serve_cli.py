"""`custseq serve`: a broken model or an unsafe binding is one line at start-up; a good one starts uvicorn's workers."""

from __future__ import annotations

import shutil

import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from custseq.cli import app
from custseq.service import app_from_environment

runner = CliRunner()


def _fails_with(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["serve", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_a_missing_model_folder_is_one_line(tmp_path):
    _fails_with(["--model", str(tmp_path / "nowhere")], f"error: no model directory at {tmp_path / 'nowhere'}")


def test_a_corrupted_model_is_one_line(model_dir, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    _fails_with(["--model", str(broken)], "model.safetensors is corrupted or truncated")
    (broken / "manifest.json").write_text("{not json")
    result = runner.invoke(app, ["serve", "--model", str(broken)])
    assert result.exit_code == 2 and "manifest.json" in result.output and "Traceback" not in result.output


def _restored_after_the_test(monkeypatch) -> None:
    """serve sets these for its workers: unset now, and back as they were after the test (set then deleted, so that
    monkeypatch remembers a variable that was absent too; delenv alone would leave serve's values behind)."""
    for name in ("CUSTSEQ_MODEL", "CUSTSEQ_HOST", "CUSTSEQ_PORT", "CUSTSEQ_WORKERS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_no_keys_on_a_public_address_refuses_to_start(model_dir, monkeypatch):
    monkeypatch.delenv("CUSTSEQ_API_KEYS", raising=False)
    _fails_with(
        ["--model", str(model_dir), "--host", "0.0.0.0"], "no API keys set and the service would listen on 0.0.0.0"
    )


def test_serve_hands_uvicorn_the_factory_and_its_workers_the_settings(model_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: calls.append((target, kw)))
    _restored_after_the_test(monkeypatch)
    monkeypatch.setenv("CUSTSEQ_API_KEYS", "k")
    result = runner.invoke(app, ["serve", "--model", str(model_dir), "--host", "0.0.0.0", "--port", "8123",
                                 "--workers", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    ((target, kw),) = calls
    assert target == "custseq.service:app_from_environment" and kw["factory"] is True
    assert (kw["host"], kw["port"], kw["workers"]) == ("0.0.0.0", 8123, 2)
    worker_app = TestClient(app_from_environment())  # what each worker builds from the environment
    assert worker_app.get("/model").status_code == 401
    assert worker_app.get("/model", headers={"X-API-Key": "k"}).json()["horizon_days"] == 90


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_keys_may_be_off_on_loopback(model_dir, monkeypatch, host):
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: None)
    monkeypatch.delenv("CUSTSEQ_API_KEYS", raising=False)
    _restored_after_the_test(monkeypatch)
    result = runner.invoke(app, ["serve", "--model", str(model_dir), "--host", host])
    assert result.exit_code == 0 and "no API keys (loopback only)" in result.output
