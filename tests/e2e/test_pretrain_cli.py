"""End-to-end: `custseq pretrain` and `custseq embed`, in one process and under torchrun."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from custseq.cli import app
from custseq.errors import ArtifactError
from custseq.models.artifacts import read_manifest
from custseq.models.pretrain import embed, load_pretrained, model_vocab
from custseq.sequences.batch import SequenceStream, shard_files

runner = CliRunner()
TINY = ["--epochs", "2", "--d-model", "16", "--layers", "1", "--max-events", "8", "--batch-size", "32"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """120 customers over 10 months with products and channels."""
    rng = np.random.default_rng(3)
    rows = []
    for c in range(120):
        day = int(rng.integers(0, 60))
        while day < 300:
            rows.append({"customer_id": f"k{c:03d}", "ts": dt.date(2023, 1, 1) + dt.timedelta(days=day),
                         "amount": round(float(rng.gamma(2.0, 15.0)), 2), "product": f"p{int(rng.integers(6))}",
                         "channel": ["web", "app"][c % 2]})  # fmt: skip
            day += int(rng.integers(5, 60))
    path = tmp_path_factory.mktemp("shop") / "shop.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def model_dir(shop, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "model"
    result = runner.invoke(app, ["pretrain", str(shop), "--out", str(out), "--horizon", "60d", *TINY])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


def test_pretrain_writes_a_safe_loadable_artifact(model_dir):
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "config.json", "manifest.json", "model.safetensors", "train_log.jsonl", "vocab.json"
    ]  # fmt: skip
    manifest = read_manifest(model_dir)
    assert manifest.model_type == "custseq-pretrain" and len(manifest.cutoffs) >= 2
    assert np.isfinite(manifest.metrics["best_val_loss"])
    assert len((model_dir / "train_log.jsonl").read_text().splitlines()) == 2
    model, _ = load_pretrained(model_dir)
    assert model.encoder.cfg.d_model == 16 and not model.training


def test_embed_cli_matches_the_loaded_model_bit_for_bit(model_dir, shop, tmp_path):
    out = tmp_path / "emb.parquet"
    result = runner.invoke(app, ["embed", str(shop), "--model", str(model_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    from_cli = pq.read_table(out)
    assert from_cli.num_rows == 120 and from_cli.column_names[:2] == ["customer_id", "e0"]
    assert from_cli.num_columns == 17
    again = tmp_path / "again.parquet"
    runner.invoke(app, ["embed", str(shop), "--model", str(model_dir), "--out", str(again)])
    assert pq.read_table(again).equals(from_cli)


def test_save_then_load_gives_bit_identical_embeddings(model_dir, shop, tmp_path):
    from custseq.config import RunConfig
    from custseq.io.tables import Tables
    from custseq.models.artifacts import save_model
    from custseq.models.pretrain import CONFIG_CLASSES, MODEL_TYPE
    from custseq.pipelines.prepare import prepare_scoring_sequences

    model, _ = load_pretrained(model_dir)
    configs = {"encoder": model.encoder.cfg, "pretrain": model.pretrain_cfg, "train": CONFIG_CLASSES["train"]()}
    save_model(tmp_path / "copy", model, configs, model_vocab(model_dir), model_type=MODEL_TYPE)
    copy, _ = load_pretrained(tmp_path / "copy")
    scoring = prepare_scoring_sequences(Tables.of(shop), RunConfig(), tmp_path / "seq", vocab=model_vocab(model_dir))
    stream = SequenceStream(tuple(shard_files(scoring.folder.sequences)), model_vocab(model_dir), 8, 64, shuffle=False)
    assert embed(copy.encoder, stream).equals(embed(model.encoder, stream))


def test_embed_before_a_date_ignores_later_rows(model_dir, shop, tmp_path):
    early = tmp_path / "early.parquet"
    runner.invoke(app, ["embed", str(shop), "--model", str(model_dir), "--out", str(early), "--as-of", "2023-06-30"])
    changed = pd.read_csv(shop)
    later = changed["ts"] > "2023-06-30"
    changed.loc[later, "amount"] *= 10
    changed.loc[later, "product"] = "brand-new"
    path = tmp_path / "changed.csv"
    changed.to_csv(path, index=False)
    moved = tmp_path / "moved.parquet"
    runner.invoke(app, ["embed", str(path), "--model", str(model_dir), "--out", str(moved), "--as-of", "2023-06-30"])
    assert pq.read_table(early).equals(pq.read_table(moved))


def test_embed_refuses_data_without_the_models_fields(model_dir, shop, tmp_path):
    bare = tmp_path / "bare.csv"
    pd.read_csv(shop).drop(columns=["product"]).to_csv(bare, index=False)
    result = runner.invoke(app, ["embed", str(bare), "--model", str(model_dir), "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code == 2
    assert "trained with field(s) ['transactions.product']" in " ".join(result.output.split())


def test_embed_refuses_a_corrupted_model(model_dir, shop, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in model_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ArtifactError):
        load_pretrained(broken)
    result = runner.invoke(app, ["embed", str(shop), "--model", str(broken), "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_python_embed_equals_cli_embed(model_dir, shop, tmp_path):
    from custseq.config import RunConfig
    from custseq.io.tables import Tables
    from custseq.pipelines.prepare import prepare_scoring_sequences

    out = tmp_path / "cli.parquet"
    runner.invoke(app, ["embed", str(shop), "--model", str(model_dir), "--out", str(out)])
    scoring = prepare_scoring_sequences(Tables.of(shop), RunConfig(), tmp_path / "seq", vocab=model_vocab(model_dir))
    model, _ = load_pretrained(model_dir)
    stream = SequenceStream(tuple(shard_files(scoring.folder.sequences)), model_vocab(model_dir), 8, 7, shuffle=False)
    python, cli = embed(model.encoder, stream), pq.read_table(out)
    assert python.column("customer_id").equals(cli.column("customer_id"))
    # another batch size pads to other widths: equal up to float rounding, not bit for bit
    np.testing.assert_allclose(
        python.drop_columns(["customer_id"]).to_pandas(), cli.drop_columns(["customer_id"]).to_pandas(), atol=1e-5
    )


def test_distributed_pretrain_on_two_processes(shop, tmp_path):
    out = tmp_path / "ddp-model"
    result = runner.invoke(app, ["pretrain", str(shop), "--out", str(out), "--horizon", "60d", "--nproc", "2", *TINY])
    assert result.exit_code == 0, result.output + repr(result.exception)
    model, manifest = load_pretrained(out)
    assert manifest.model_type == "custseq-pretrain"
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_python_api_pretrain_and_embed(shop, tmp_path):
    import custseq
    from custseq.config import EncoderConfig, ModelConfig, RunConfig, TrainConfig

    model = ModelConfig(
        encoder=EncoderConfig(d_model=16, n_layers=1, max_events=8),
        pretrain_training=TrainConfig(epochs=1, batch_size=32),
    )
    run = custseq.pretrain(shop, out=tmp_path / "m", horizon="60d", config=RunConfig(model=model))
    assert run.result is not None and run.result.epochs_run == 1
    table, scoring = custseq.embed(tmp_path / "m", shop, out=tmp_path / "e.parquet")
    assert table.num_rows == scoring.customers == 120
    assert pq.read_table(tmp_path / "e.parquet").equals(table)
