"""The DuckDB connection: a memory limit from the config or from the machine's memory, and spilling to disk."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from custseq.config import EngineConfig
from custseq.errors import ConfigError
from custseq.io import engine
from custseq.io.engine import connect, fetch_scalar, memory_limit_bytes


def _setting(con, name: str) -> str:
    return fetch_scalar(con, "SELECT current_setting($name)", {"name": name})


def test_the_configured_memory_limit_is_applied():
    con = connect(EngineConfig(memory_limit="1GiB"))
    assert _setting(con, "memory_limit") == "1.0 GiB"


def test_without_a_setting_duckdb_gets_half_the_machines_memory(monkeypatch):
    monkeypatch.setattr(engine, "machine_memory_bytes", lambda: 8 * 2**30)
    assert engine.default_memory_limit() == "4096MiB"
    assert _setting(connect(), "memory_limit") == "4.0 GiB"


def test_a_container_limit_below_the_machines_memory_wins(monkeypatch, tmp_path):
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    monkeypatch.setattr(engine, "_CGROUP_LIMITS", (v2, v1))
    monkeypatch.setattr(engine.psutil, "virtual_memory", lambda: type("Memory", (), {"total": 16 * 2**30})())
    assert engine.machine_memory_bytes() == 16 * 2**30  # no cgroup file: the machine's memory
    v1.write_text("2147483648\n")
    assert engine.machine_memory_bytes() == 2 * 2**30  # cgroup v1 limit
    v2.write_text("max\n")
    assert engine.machine_memory_bytes() == 16 * 2**30  # cgroup v2 without a limit is read first


def test_a_query_larger_than_the_limit_spills_to_the_temp_directory_which_is_removed_on_close(tmp_path):
    spill = tmp_path / "spill"
    con = connect(EngineConfig(memory_limit="32MB", temp_directory=str(spill), threads=1))
    assert _setting(con, "temp_directory") == str(spill)
    con.execute("CREATE TABLE t AS SELECT random() AS r FROM range(3000000)")
    n, last = con.execute("SELECT count(*), max(i) FROM (SELECT row_number() OVER (ORDER BY r) AS i FROM t)").fetchone()
    assert n == last == 3_000_000  # the sort finished under a 32 MB limit ...
    assert any(p.name.startswith("duckdb_temp") for p in spill.iterdir())  # ... because it spilled here
    con.close()
    assert not spill.exists()


def test_each_connection_spills_to_its_own_folder_in_the_system_temp_dir():
    first, second = (Path(_setting(connect(), "temp_directory")) for _ in range(2))
    assert first.parent == second.parent == Path(tempfile.gettempdir())
    assert first != second and first.name.startswith("custseq-spill-")


def test_a_setting_that_could_escape_its_quotes_is_refused():
    with pytest.raises(ConfigError, match="may not contain quotes or semicolons"):
        connect(EngineConfig(temp_directory="/tmp/x'; DROP TABLE t; --"))


def test_the_memory_limit_is_read_back_from_duckdb():
    con = connect(EngineConfig(memory_limit="4GB"))
    assert 3.6 * 2**30 < memory_limit_bytes(con) <= 4 * 10**9
    con.execute("SET memory_limit = '512MiB'")
    assert memory_limit_bytes(con) == 512 * 2**20
