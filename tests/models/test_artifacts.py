"""Model directories: save/load round trips exactly, and every kind of damage is refused by name."""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

import custseq
from custseq.config import EncoderConfig, PretrainConfig, config_to_dict
from custseq.errors import ArtifactError
from custseq.models import artifacts
from custseq.models.artifacts import (
    FORMAT_VERSION,
    Manifest,
    config_hash,
    configs_from_json,
    data_fingerprint,
    load_model,
    read_manifest,
    save_model,
)
from custseq.sequences.tokens import Field, TokenLayout
from custseq.sequences.vocab import SequenceVocab


@dataclass(frozen=True)
class ToyConfig:
    d_in: int = 3
    d_hidden: int = 5
    names: tuple[str, ...] = ("churn", "clv")  # a tuple, to check it comes back as one


class ToyModel(nn.Module):
    """A linear layer, one output per name, a persistent buffer and an embedding sized by the vocabulary."""

    def __init__(self, cfg: ToyConfig, vocab: SequenceVocab | None = None, extra_param: bool = False) -> None:
        super().__init__()
        self.hidden = nn.Linear(cfg.d_in, cfg.d_hidden)
        self.out = nn.Linear(cfg.d_hidden, len(cfg.names))
        self.register_buffer("scale", torch.ones(len(cfg.names)))
        self.product = nn.Embedding(vocab.size("product"), cfg.d_hidden) if vocab is not None else None
        if extra_param:
            self.extra = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, product: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.tanh(self.hidden(x))  # (B, H)
        if self.product is not None and product is not None:
            h = h + self.product(product)
        return self.out(h) * self.scale  # (B, len(names))


def build(config: dict, vocab: SequenceVocab | None) -> ToyModel:
    return ToyModel(configs_from_json(config, {"toy": ToyConfig})["toy"], vocab)


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter and buffer from a fixed generator, so that a fresh build differs from it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.copy_(torch.randn(t.shape, generator=g))
    return model


def make_vocab() -> SequenceVocab:
    layout = TokenLayout(
        token="order",
        fields=(
            Field("product", "transactions", "product", "category"),
            Field("amount", "transactions", "amount", "number"),
        ),
        has_events=False,
    )
    return SequenceVocab(
        layout=layout,
        values={"product": ("apple", "pear", "plum")},
        stats={"amount": (1.25, 0.5)},
        fitted_before="2011-06-01T00:00:00",
    )


CFG = ToyConfig()
X = torch.linspace(-1, 1, 12).reshape(4, 3)


@pytest.fixture
def saved(tmp_path) -> tuple[Path, ToyModel, Manifest]:
    model = randomised(ToyModel(CFG))
    path = tmp_path / "model"
    manifest = save_model(
        path,
        model,
        {"toy": CFG, "note": "plain JSON is kept"},
        None,
        model_type="toy",
        data_fingerprint=data_fingerprint(["tx.csv:abc123", "rows=1000"]),
        cutoffs=(dt.date(2011, 3, 1), "2011-06-01"),
        metrics={"auc": 0.75, "brier": 0.125},
        extra={"task_weighting": "uncertainty"},
    )
    return path, model, manifest


def test_round_trip_gives_identical_state_dict_and_outputs(saved):
    path, model, _ = saved
    fresh = build({"toy": config_to_dict(CFG)}, None)
    assert not torch.equal(fresh.hidden.weight, model.hidden.weight)  # the load below is not vacuous

    loaded, config, vocab, _ = load_model(path, build, expected_type="toy")

    original, restored = model.state_dict(), loaded.state_dict()
    assert list(restored) == list(original)
    for name, tensor in original.items():
        assert torch.equal(restored[name], tensor), name
    assert torch.equal(loaded(X), model(X))
    assert config == {"toy": {"d_in": 3, "d_hidden": 5, "names": ["churn", "clv"]}, "note": "plain JSON is kept"}
    assert vocab is None
    assert not loaded.training


def test_manifest_records_version_hashes_fingerprint_cutoffs_and_metrics(saved):
    path, _, manifest = saved
    assert read_manifest(path) == manifest
    assert manifest.custseq_version == custseq.__version__
    assert manifest.format_version == FORMAT_VERSION == 1
    assert manifest.model_type == "toy"
    assert manifest.config_hash == config_hash(json.loads((path / "config.json").read_text()))
    assert manifest.weights_sha256 == hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    assert manifest.data_fingerprint == data_fingerprint(["tx.csv:abc123", "rows=1000"])
    assert manifest.cutoffs == ("2011-03-01", "2011-06-01")
    assert manifest.metrics == {"auc": 0.75, "brier": 0.125}
    assert manifest.extra == {"task_weighting": "uncertainty"}
    assert manifest.vocab_hash is None
    assert dt.datetime.fromisoformat(manifest.created_at).tzinfo is not None


def test_directory_holds_only_json_and_safetensors_and_no_temporary_files_remain(saved):
    path, _, _ = saved
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "manifest.json", "model.safetensors"]
    assert [p.name for p in path.parent.iterdir()] == ["model"]
    for p in path.iterdir():
        assert p.suffix in (".json", ".safetensors")
        if p.suffix == ".json":
            json.loads(p.read_text())
    assert set(safetensors.torch.load_file(path / "model.safetensors")) == set(ToyModel(CFG).state_dict())


def test_module_never_pickles():
    tree = ast.parse(Path(artifacts.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
    torch_calls = {
        n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "torch"
    }
    assert not torch_calls & {"load", "save"}
    assert "torch" in imported and "safetensors" in imported  # the walk above sees the module's imports


def test_round_trip_with_a_sequence_vocab(tmp_path):
    vocab = make_vocab()
    model = randomised(ToyModel(CFG, vocab), seed=1)
    manifest = save_model(tmp_path / "m", model, {"toy": CFG}, vocab, model_type="toy")

    loaded, _, loaded_vocab, _ = load_model(tmp_path / "m", build)

    assert loaded_vocab == vocab
    assert manifest.vocab_hash == config_hash(json.loads((tmp_path / "m" / "vocab.json").read_text()))
    assert loaded.product.num_embeddings == vocab.size("product") == 6
    products = torch.tensor([0, 3, 4, 5])
    assert torch.equal(loaded(X, products), model(X, products))


def test_configs_from_json_restores_dataclasses_and_keeps_other_sections(tmp_path):
    encoder, pretrain = EncoderConfig(d_model=8, n_heads=2), PretrainConfig(objectives=("masked",), mask_rate=0.3)
    model = randomised(ToyModel(CFG))
    save_model(
        tmp_path / "m", model, {"encoder": encoder, "pretrain": pretrain, "toy": CFG, "n": 2}, None, model_type="t"
    )

    _, config, _, _ = load_model(tmp_path / "m", build)
    rebuilt = configs_from_json(config, {"encoder": EncoderConfig, "pretrain": PretrainConfig, "toy": ToyConfig})

    assert rebuilt == {"encoder": encoder, "pretrain": pretrain, "toy": CFG, "n": 2}
    assert rebuilt["pretrain"].objectives == ("masked",)
    with pytest.raises(ArtifactError, match=r"no section\(s\) \['train'\]"):
        configs_from_json(config, {"train": ToyConfig})


def test_tied_weights_are_saved_and_retied(tmp_path):
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(4, 3)
            self.unembed = nn.Linear(3, 4, bias=False)
            self.unembed.weight = self.embed.weight

    model = randomised(Tied())
    save_model(tmp_path / "m", model, {}, None, model_type="tied")
    loaded, _, _, _ = load_model(tmp_path / "m", lambda config, vocab: Tied())
    assert loaded.unembed.weight is loaded.embed.weight
    assert torch.equal(loaded.embed.weight, model.embed.weight)


def test_saving_again_replaces_the_whole_directory(saved):
    path, _, _ = saved
    vocab = make_vocab()
    save_model(path, randomised(ToyModel(CFG, vocab), seed=2), {"toy": CFG}, vocab, model_type="toy")
    assert (path / "vocab.json").exists()
    other = randomised(ToyModel(CFG), seed=3)

    save_model(path, other, {"toy": CFG}, None, model_type="toy")

    assert not (path / "vocab.json").exists()  # nothing of the previous model is left
    loaded, _, vocab, _ = load_model(path, build)
    assert vocab is None
    assert torch.equal(loaded(X), other(X))
    assert [p.name for p in path.parent.iterdir()] == ["model"]


def test_refuses_to_overwrite_a_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(ArtifactError, match=r"refusing to overwrite .*not a model folder"):
        save_model(tmp_path, ToyModel(CFG), {"toy": CFG}, None, model_type="toy")
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_refuses_a_config_or_extra_that_is_not_json(tmp_path):
    with pytest.raises(ArtifactError, match="config is not JSON"):
        save_model(tmp_path / "m", ToyModel(CFG), {"toy": CFG, "t": torch.ones(1)}, None, model_type="toy")
    with pytest.raises(ArtifactError, match="must be JSON"):
        save_model(tmp_path / "m", ToyModel(CFG), {"toy": CFG}, None, model_type="toy", extra={"f": object()})
    assert not (tmp_path / "m").exists()


# --- every kind of damage is refused with a message naming the file and the problem ---------------------------


def test_missing_directory(tmp_path):
    with pytest.raises(ArtifactError, match=r"no model directory at .*nowhere"):
        load_model(tmp_path / "nowhere", build)


@pytest.mark.parametrize("name", ["manifest.json", "config.json", "model.safetensors"])
def test_deleted_file(saved, name):
    path, _, _ = saved
    (path / name).unlink()
    with pytest.raises(ArtifactError, match=rf"{name} is missing: the model directory is incomplete"):
        load_model(path, build)


def test_deleted_vocab(tmp_path):
    vocab = make_vocab()
    save_model(tmp_path / "m", ToyModel(CFG, vocab), {"toy": CFG}, vocab, model_type="toy")
    (tmp_path / "m" / "vocab.json").unlink()
    with pytest.raises(ArtifactError, match=r"vocab.json is missing"):
        load_model(tmp_path / "m", build)


@pytest.mark.parametrize("name", ["manifest.json", "config.json"])
def test_invalid_json(saved, name):
    path, _, _ = saved
    (path / name).write_text('{"truncated": ')
    with pytest.raises(ArtifactError, match=rf"{name} is not valid JSON"):
        load_model(path, build)


def test_truncated_weights(saved):
    path, _, _ = saved
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[:-7])
    with pytest.raises(
        ArtifactError, match=rf"model.safetensors is corrupted or truncated: .*\({len(data) - 7} bytes\)"
    ):
        load_model(path, build)


def test_flipped_bytes_in_weights(saved):
    path, _, _ = saved
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF  # inside the last tensor: still a valid safetensors file, only the hash tells
    (path / "model.safetensors").write_bytes(bytes(data))
    safetensors.torch.load_file(path / "model.safetensors")  # the damage is not a format error
    with pytest.raises(ArtifactError, match=r"model\.safetensors is corrupted or truncated"):
        load_model(path, build)


def test_unreadable_safetensors_even_when_the_hash_matches(saved):
    path, _, _ = saved
    garbage = b"\x10\x00\x00\x00\x00\x00\x00\x00not a header"
    (path / "model.safetensors").write_bytes(garbage)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["weights_sha256"] = hashlib.sha256(garbage).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"model\.safetensors is not a readable safetensors file"):
        load_model(path, build)


def test_edited_config(saved):
    path, _, _ = saved
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(config, indent=4, sort_keys=True))  # reformatting is fine
    load_model(path, build)
    config["toy"]["d_hidden"] = 7
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match=r"config.json does not match the manifest .*edited after saving"):
        load_model(path, build)


def test_edited_vocab(tmp_path):
    vocab = make_vocab()
    save_model(tmp_path / "m", ToyModel(CFG, vocab), {"toy": CFG}, vocab, model_type="toy")
    d = json.loads((tmp_path / "m" / "vocab.json").read_text())
    d["values"]["product"].append("quince")
    (tmp_path / "m" / "vocab.json").write_text(json.dumps(d))
    with pytest.raises(ArtifactError, match=r"vocab.json does not match the manifest .*edited after saving"):
        load_model(tmp_path / "m", build)


def test_other_format_version(saved):
    path, _, _ = saved
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"written by format 99 .*this custseq .* reads 1"):
        load_model(path, build)
    with pytest.raises(ArtifactError, match="written by format 99"):
        read_manifest(path)


def test_incomplete_manifest(saved):
    path, _, _ = saved
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["weights_sha256"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"manifest.json is incomplete: missing \['weights_sha256'\]"):
        load_model(path, build)


def test_other_model_type(saved):
    path, _, _ = saved
    with pytest.raises(ArtifactError, match=r"holds a 'toy' model, but a 'churn-clv' model is needed"):
        load_model(path, build, expected_type="churn-clv")


def test_model_with_an_extra_parameter_fails_strict_load(saved):
    path, _, _ = saved
    with pytest.raises(ArtifactError, match=r"do not fit the model .*missing keys \['extra'\]"):
        load_model(path, lambda config, vocab: ToyModel(CFG, extra_param=True))


def test_weights_with_an_unexpected_key_or_another_shape_fail_strict_load(tmp_path):
    save_model(tmp_path / "m", ToyModel(CFG, extra_param=True), {"toy": CFG}, None, model_type="toy")
    with pytest.raises(ArtifactError, match=r"unexpected keys \['extra'\]"):
        load_model(tmp_path / "m", build)
    with pytest.raises(ArtifactError, match=r"shape mismatches .*hidden.weight: saved \(5, 3\), model \(7, 3\)"):
        load_model(tmp_path / "m", lambda config, vocab: ToyModel(ToyConfig(d_hidden=7), extra_param=True))


def test_build_that_cannot_read_the_config(saved):
    path, _, _ = saved

    @dataclass(frozen=True)
    class RenamedConfig:
        d_in: int = 3

    with pytest.raises(ArtifactError, match=r"cannot build a 'toy' model .*unknown setting"):
        load_model(path, lambda config, vocab: ToyModel(configs_from_json(config, {"toy": RenamedConfig})["toy"]))


# --- hashes -----------------------------------------------------------------------------------------------------


def test_config_hash_is_sha256_of_canonical_json():
    assert config_hash({"b": [1, 2], "a": "x"}) == hashlib.sha256(b'{"a":"x","b":[1,2]}').hexdigest()
    assert config_hash({"a": "x", "b": [1, 2]}) == config_hash({"b": [1, 2], "a": "x"})
    assert config_hash({"a": "x", "b": [1, 3]}) != config_hash({"a": "x", "b": [1, 2]})


def test_data_fingerprint_is_length_prefixed_and_ordered():
    assert data_fingerprint([]) == hashlib.sha256(b"").hexdigest()
    assert data_fingerprint(["a"]) == hashlib.sha256(b"\x01\x00\x00\x00\x00\x00\x00\x00a").hexdigest()
    assert data_fingerprint(["a", b"b"]) == data_fingerprint([b"a", "b"])
    assert data_fingerprint(["ab", "c"]) != data_fingerprint(["a", "bc"])
    assert data_fingerprint(["a", "b"]) != data_fingerprint(["b", "a"])
