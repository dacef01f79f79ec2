import pytest

from indexer.errors import ConfigError
from ops.config import effective_config, load_settings, mask_url


def test_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for k in list(__import__("os").environ):
        if k.startswith("SLUDGE_"):
            monkeypatch.delenv(k)
    s = load_settings()
    assert s.index.sampler == "uniform:4"
    assert s.encoder.model == "ViT-B-32" and s.encoder.pretrained == "laion2b_s34b_b79k"
    assert not s.encoder.random_weights


def test_env_over_toml_over_defaults(monkeypatch, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('data_dir = "/srv/sludge"\n[encoder]\nbatch_size = 4\nmodel = "ViT-B-16"\n[index]\nsampler = "fps:1,max:30"\n')
    monkeypatch.setenv("SLUDGE_CONFIG", str(cfg))
    monkeypatch.setenv("SLUDGE_ENCODER__BATCH_SIZE", "8")
    s = load_settings()
    assert str(s.data_dir) == "/srv/sludge"
    assert s.encoder.batch_size == 8  # env wins
    assert s.encoder.model == "ViT-B-16"  # from the file
    assert s.index.sampler == "fps:1,max:30"


def test_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SLUDGE_DATA_DIR", str(tmp_path / "d"))
    s = load_settings()
    assert s.bank_dir == tmp_path / "d" / "bank"


def test_bad_values_are_one_readable_error(monkeypatch):
    monkeypatch.setenv("SLUDGE_INDEX__SAMPLER", "uniform:zero")
    with pytest.raises(ConfigError, match="index.sampler.*whole number"):
        load_settings()


def test_unknown_key_in_file(monkeypatch, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text("[encoder]\nmodle = 'x'\n")
    monkeypatch.setenv("SLUDGE_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="encoder.modle"):
        load_settings()


def test_missing_config_file(monkeypatch, tmp_path):
    monkeypatch.setenv("SLUDGE_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="not a file"):
        load_settings()


def test_secrets_masked(monkeypatch):
    monkeypatch.setenv("SLUDGE_REDIS_URL", "redis://user:hunter2@cache:6379/0")
    shown = effective_config(load_settings())
    assert shown["redis_url"] == "redis://user:****@cache:6379/0"
    assert "hunter2" not in str(shown)
    assert mask_url("http://localhost:9200") == "http://localhost:9200"
