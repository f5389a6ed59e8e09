"""The HTTP service end to end through FastAPI's TestClient: endpoints, keys, bad input, limits, failures, metrics."""

from __future__ import annotations

import json
import logging
import time

import pytest
from fastapi.testclient import TestClient

import custseq.service.served as served_module
from custseq.config.service import ServiceSettings, hash_key
from custseq.errors import ConfigError
from custseq.service import create_app
from custseq.service.schemas import MAX_TEXT_CHARS

AS_OF = "1998-06-30"  # the model fixture's (conftest)
KEY = "s3cret-key"
GOOD = {"X-API-Key": KEY}


def _customer(cid: str = "c1", **extra: object) -> dict:
    rows = [{"ts": "1997-01-03", "amount": 20.5, "quantity": 2}, {"ts": "1998-02-11", "amount": 41.0, "quantity": 3}]
    return {"customer_id": cid, "transactions": rows, **extra}


def _body(*customers: dict, as_of: str = AS_OF) -> dict:
    return {"as_of": as_of, "customers": list(customers) or [_customer()]}


PREDICTION_FIELDS = ["customer_id", "churn_probability", "clv_expected", "clv_p10", "clv_p50", "clv_p90",
                     "clv_if_active", "p_alive", "lapsed_regular", "segment", "value_score", "contact_profit",
                     "next_items", "retention_flag", "next_actions"]  # predictions.csv's  # fmt: skip


@pytest.fixture(scope="module")
def client(model_dir) -> TestClient:
    settings = ServiceSettings(key_hashes=(hash_key(KEY),), max_customers=8, max_transactions_per_customer=50,
                               max_events_per_customer=3, max_body_bytes=20_000)  # fmt: skip
    return TestClient(create_app(model_dir, settings))


def test_health_and_ready_answer_without_a_key(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}


def test_model_describes_the_served_model(client, model_dir):
    info = client.get("/model", headers=GOOD).json()
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert info["cutoffs"] == manifest["cutoffs"] and info["horizon_days"] == 90
    assert info["validation_metrics"] == pytest.approx(manifest["metrics"])
    assert {"customer_id", "ts", "amount", "quantity"} <= set(info["transaction_fields"])
    assert info["prediction_fields"][:3] == ["customer_id", "churn_probability", "clv_expected"]


def test_score_returns_the_predictions_fields(client, real_body, sample_ids):
    r = client.post("/score", json=real_body, headers=GOOD)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["as_of"] == AS_OF and out["horizon_days"] == 90 and out["not_scored"] == []
    assert [p["customer_id"] for p in out["predictions"]] == sorted(sample_ids)
    for p in out["predictions"]:
        assert list(p) == PREDICTION_FIELDS
        assert 0 <= p["churn_probability"] <= 1 and 0 <= p["clv_p10"] <= p["clv_p50"] <= p["clv_p90"]
        assert isinstance(p["next_actions"], list) and p["next_actions"] and "action" in p["next_actions"][0]


def test_two_customers_alone_score_like_any_others(client):
    # the saved BG/NBD + Gamma-Gamma fit reads any batch: two identical histories, which a fit on the batch could
    # not converge on, get the same scores: equal but for the network's float noise (on some CPUs a row's numbers
    # depend on its place in the batch: 5.5510969 against 5.5510967), which the ranked value score ignores
    r = client.post("/score", json=_body(_customer("a"), _customer("b")), headers=GOOD)
    assert r.status_code == 200, r.text
    a, b = r.json()["predictions"]
    for field in PREDICTION_FIELDS[1:]:
        if isinstance(a[field], float) and field != "value_score":
            assert a[field] == pytest.approx(b[field], rel=1e-6), field
        else:
            assert a[field] == b[field], field


def test_the_pipeline_refusing_a_batch_is_a_422_with_its_message(client, monkeypatch):
    def refuse(*args, **kwargs):
        raise ConfigError("these customers cannot be scored: a reason the user can act on")

    monkeypatch.setattr(served_module, "score_in_memory", refuse)
    r = client.post("/score", json=_body(_customer("a")), headers=GOOD)
    assert (
        r.status_code == 422 and r.json()["detail"] == "these customers cannot be scored: a reason the user can act on"
    )


def test_embed_returns_one_vector_per_customer(client, real_body, sample_ids):
    r = client.post("/embed", json=real_body, headers=GOOD)
    assert r.status_code == 200, r.text
    out = r.json()
    vectors = {e["customer_id"]: e["embedding"] for e in out["embeddings"]}
    assert sorted(vectors) == sorted(sample_ids) and all(len(v) == out["dimension"] == 16 for v in vectors.values())
    assert len({tuple(v) for v in vectors.values()}) == len(vectors)  # different histories, different vectors


@pytest.mark.parametrize(("headers", "code"), [({}, 401), ({"X-API-Key": "wrong"}, 403), ({"X-API-Key": ""}, 401)])
def test_keys_are_required(client, headers, code):
    for method, path in (("get", "/model"), ("get", "/metrics"), ("post", "/score"), ("post", "/embed")):
        r = client.request(method, path, headers=headers, json=_body())
        assert r.status_code == code, (path, r.text)


def test_keys_from_a_file_of_hashes(tmp_path, model_dir):
    file = tmp_path / "keys"
    file.write_text(f"# ops team\n{hash_key('k-file')}\n")
    settings = ServiceSettings.from_environment({"CUSTSEQ_API_KEY_FILE": str(file), "CUSTSEQ_API_KEYS": "k-env"})
    c = TestClient(create_app(model_dir, settings))
    assert c.get("/model", headers={"X-API-Key": "k-file"}).status_code == 200
    assert c.get("/model", headers={"X-API-Key": "k-env"}).status_code == 200
    assert c.get("/model", headers={"X-API-Key": hash_key("k-file")}).status_code == 403  # the hash is no key


def test_keys_off_only_on_loopback(model_dir):
    c = TestClient(create_app(model_dir, ServiceSettings(host="127.0.0.1")))
    assert c.get("/model").status_code == 200
    for host in ("0.0.0.0", "10.1.2.3", "::"):
        with pytest.raises(ConfigError, match=rf"no API keys set and the service would listen on {host}"):
            ServiceSettings.from_environment({}, host=host)
    assert ServiceSettings.from_environment({"CUSTSEQ_API_KEYS": "a, b"}, host="0.0.0.0").key_hashes == (
        hash_key("a"), hash_key("b"))  # fmt: skip


def test_settings_from_the_environment_refuse_bad_values():
    s = ServiceSettings.from_environment({"CUSTSEQ_MAX_CUSTOMERS": "7", "CUSTSEQ_REQUEST_TIMEOUT_S": "2.5"}, port=9)
    assert (s.max_customers, s.request_timeout_s, s.port) == (7, 2.5, 9)
    with pytest.raises(ConfigError, match="CUSTSEQ_PORT='eighty' is not a number"):
        ServiceSettings.from_environment({"CUSTSEQ_PORT": "eighty"})
    with pytest.raises(ConfigError, match="max_customers must be at least 1"):
        ServiceSettings(max_customers=0)
    assert ServiceSettings.from_environment({"CUSTSEQ_THREADS": "2"}).threads == 2
    with pytest.raises(ConfigError, match="threads must be at least 1, got 0"):
        ServiceSettings.from_environment({"CUSTSEQ_THREADS": "0"})


def _tx(**fields: object) -> dict:
    return _body(_customer(transactions=[{"ts": "1997-01-03", "amount": 20.5, "quantity": 1, **fields}]))


def _without(key: str) -> dict:
    body = _tx()
    del body["customers"][0]["transactions"][0][key]
    return body


BAD_BODIES = {
    "amount as text": (_tx(amount="20.5"), ["customers", 0, "transactions", 0, "amount"]),
    "amount as boolean": (_tx(amount=True), ["customers", 0, "transactions", 0, "amount"]),
    "missing amount": (_without("amount"), ["customers", 0, "transactions", 0, "amount"]),
    "missing ts": (_without("ts"), ["customers", 0, "transactions", 0, "ts"]),
    "ts as a number": (_tx(ts=852249600), ["customers", 0, "transactions", 0, "ts"]),
    "unparsable ts": (_tx(ts="03/01/1997"), ["customers", 0, "transactions", 0, "ts"]),
    "impossible date": (_tx(ts="1997-02-30"), ["customers", 0, "transactions", 0, "ts"]),
    "ts before 1900": (_tx(ts="1066-10-14"), ["customers", 0, "transactions", 0, "ts"]),
    "unknown field": (_tx(colour="red"), ["customers", 0, "transactions", 0, "colour"]),
    "id as a number": (_body(_customer(cid=7)), ["customers", 0, "customer_id"]),  # type: ignore[arg-type]
    "empty id": (_body(_customer(cid="")), ["customers", 0, "customer_id"]),
    "no transactions": (_body(_customer(transactions=[])), ["customers", 0, "transactions"]),
    "empty batch": ({"as_of": AS_OF, "customers": []}, ["customers"]),
    "missing as_of": ({"customers": [_customer()]}, ["as_of"]),
    "bad as_of": (_body(as_of="1998-13-01"), ["as_of"]),
    "duplicate ids": (_body(_customer("d"), _customer("d")), []),
    "after as_of": (_body(as_of="1997-12-31"), []),
    "event after as_of": (_body(_customer(events=[{"ts": "1998-07-01T00:00:00", "event": "visit"}])), []),
    "event text not text": (
        _body(_customer(events=[{"ts": "1998-01-01", "event": "ticket", "text": 5}])),
        ["customers", 0, "events", 0, "text"],
    ),
    "event text too long": (
        _body(_customer(events=[{"ts": "1998-01-01", "event": "ticket", "text": "x" * (MAX_TEXT_CHARS + 1)}])),
        ["customers", 0, "events", 0, "text"],
    ),
}


@pytest.mark.parametrize("name", BAD_BODIES)
def test_bad_input_is_a_422_naming_the_field(client, name):
    body, loc = BAD_BODIES[name]
    r = client.post("/score", json=body, headers=GOOD)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert ["body", *loc] in [e["loc"] for e in errors], errors
    assert all(set(e) == {"loc", "msg", "type"} for e in errors)  # the input is never echoed


def test_duplicates_and_late_rows_are_explained(client):
    r = client.post("/score", json=_body(_customer("d"), _customer("d")), headers=GOOD)
    assert "customer_id must be unique in a request; repeated: ['d']" in r.text
    r = client.post("/score", json=_body(as_of="1997-12-31"), headers=GOOD)
    assert "customers[0] (c1) has 1 transaction(s) or event(s) after as_of 1997-12-31" in r.text


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_amounts_are_refused(client, literal):
    text = json.dumps(_tx(amount=0.0)).replace('"amount": 0.0', f'"amount": {literal}')
    r = client.post("/score", content=text, headers={**GOOD, "content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "customers", 0, "transactions", 0, "amount"]


def test_malformed_json_is_a_400(client):
    r = client.post(
        "/score",
        content=b'{"as_of": "1998-06-30", "customers": [',
        headers={**GOOD, "content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["detail"][0]["type"] == "json_invalid"


def test_a_pipeline_error_is_a_422_with_its_message(client):
    no_quantity = _body(_customer(transactions=[{"ts": "1997-01-03", "amount": 20.5}]))
    r = client.post("/score", json=no_quantity, headers=GOOD)
    assert r.status_code == 422
    assert "the model was trained with field(s) ['transactions.quantity'], which these data lack" in r.json()["detail"]


def test_limits_name_the_setting(client):
    too_many = _body(*[_customer(f"c{i}") for i in range(9)])
    r = client.post("/score", json=too_many, headers=GOOD)
    assert r.status_code == 413 and "the limit is 8 (max_customers)" in r.json()["detail"]
    rows = [{"ts": "1997-01-03", "amount": 1.0, "quantity": 1}] * 51
    r = client.post("/score", json=_body(_customer(transactions=rows)), headers=GOOD)
    assert r.status_code == 413 and "the limit is 50 (max_transactions_per_customer)" in r.json()["detail"]
    events = [{"ts": "1997-01-03", "event": "visit"}] * 4
    r = client.post("/score", json=_body(_customer(events=events)), headers=GOOD)
    assert r.status_code == 413 and "(max_events_per_customer)" in r.json()["detail"]


def test_body_limit_by_length_and_by_bytes_received(client):
    big = json.dumps(_body(_customer(transactions=[{"ts": "1997-01-03", "amount": 1.0}] * 600))).encode()
    assert len(big) > 20_000
    r = client.post("/score", content=big, headers={**GOOD, "content-type": "application/json"})
    assert r.status_code == 413 and "limit of 20,000 bytes (max_body_bytes)" in r.json()["detail"]
    r = client.post("/score", content=iter([big[:10_000], big[10_000:]]),  # chunked: no Content-Length
                    headers={**GOOD, "content-type": "application/json"})  # fmt: skip
    assert r.status_code == 413


def test_an_unexpected_failure_is_a_500_that_leaks_nothing_and_the_server_keeps_serving(
    client, real_body, monkeypatch, caplog
):
    secret = "customer c1 spent 20.5"  # the message a failure might carry: logged nowhere

    def broken(*args, **kwargs):
        raise RuntimeError(secret)

    monkeypatch.setattr(served_module, "score_in_memory", broken)
    with caplog.at_level(logging.INFO):
        r = client.post("/score", json=_body(), headers=GOOD)
    assert r.status_code == 500 and r.json() == {"detail": "internal error while scoring"}
    assert "RuntimeError while scoring 1 customer(s)" in caplog.text and secret not in caplog.text
    monkeypatch.undo()
    assert client.post("/score", json=real_body, headers=GOOD).status_code == 200


def test_a_slow_scoring_call_times_out_with_a_503(model_dir, monkeypatch):
    c = TestClient(create_app(model_dir, ServiceSettings(request_timeout_s=0.2)))
    monkeypatch.setattr(served_module, "score_in_memory", lambda *a, **k: time.sleep(1.0))
    r = c.post("/score", json=_body())
    assert r.status_code == 503 and "limit of 0.2 s (request_timeout_s)" in r.json()["detail"]


def test_metrics_count_requests_errors_and_customers(model_dir, real_body):
    c = TestClient(create_app(model_dir, ServiceSettings()))
    assert c.post("/score", json=real_body).status_code == 200
    assert c.post("/score", json={"customers": []}).status_code == 422
    text = c.get("/metrics").text
    assert 'custseq_requests_total{endpoint="/score",status="200"} 1.0' in text
    assert 'custseq_requests_total{endpoint="/score",status="422"} 1.0' in text
    assert 'custseq_errors_total{endpoint="/score",kind="client"} 1.0' in text
    assert "custseq_customers_scored_total 8.0" in text
    assert 'custseq_request_seconds_count{endpoint="/score"} 2.0' in text


def test_openapi_documents_separate_request_and_response_schemas(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"ScoreRequest", "ScoreResponse", "Prediction", "EmbedResponse", "ModelInfo"} <= set(schemas)
    assert schemas["ScoreRequest"]["examples"][0]["as_of"] == "1998-06-30"
    assert set(spec["paths"]["/score"]["post"]["responses"]) >= {"200", "401", "403", "413", "422"}
