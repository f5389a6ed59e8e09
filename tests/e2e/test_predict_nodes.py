"""`custseq predict --nnodes 2 --rendezvous HOST:PORT` with `custseq join` on the other machine.

Both "machines" are this one: the head's torchrun hosts the c10d rendezvous on a free local port and the joining
`custseq join` reaches it there, as a second machine would over the network, through the shared work folder.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pandas as pd
import pytest
from tests.e2e.test_predict import AS_OF, TINY_TOML, _shop_rows

from custseq.errors import ConfigError
from custseq.pipelines.nodes import JOBS_FILE, Nodes

CLI = [sys.executable, "-m", "custseq.cli"]
TIMEOUT = 600  # seconds; the run itself takes about a minute
# Two machines of one process each are the same two ranks as one machine of two (rank r trains on every 2nd
# batch with seed + r), so the numbers match `--nproc 2` up to gloo's float sums.
TOLERANCE = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_predict_on_two_machines_joined_at_a_rendezvous_matches_two_processes_on_one(tmp_path):
    shop, tiny = tmp_path / "shop.csv", tmp_path / "tiny.toml"
    _shop_rows().to_csv(shop, index=False)
    tiny.write_text(TINY_TOML.replace("batch_size = 64", "batch_size = 16"))
    args = [*CLI, "predict", str(shop), "--horizon", "60d", "--as-of", AS_OF, "--config", str(tiny)]
    endpoint = f"127.0.0.1:{_free_port()}"
    two_nodes = ["--nnodes", "2", "--rendezvous", endpoint]
    joined = tmp_path / "joined"
    joiner = subprocess.Popen(
        [*CLI, "join", str(joined), *two_nodes, "--wait", str(TIMEOUT)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        head = subprocess.run(
            [*args, "--out", str(joined), *two_nodes], capture_output=True, text=True, timeout=TIMEOUT
        )
        joiner_output, _ = joiner.communicate(timeout=TIMEOUT)
    finally:
        joiner.kill()
    assert head.returncode == 0, head.stdout + head.stderr
    assert "on each of 2 machines" in head.stderr
    assert joiner.returncode == 0, joiner_output
    assert "training over: 2 steps run on this machine" in joiner_output  # pre-training, then fine-tuning

    single = tmp_path / "single"
    one = subprocess.run([*args, "--out", str(single), "--nproc", "2"], capture_output=True, text=True, timeout=TIMEOUT)
    assert one.returncode == 0, one.stdout + one.stderr
    a, b = (pd.read_parquet(d / "predictions.parquet").set_index("customer_id") for d in (joined, single))
    assert a.index.equals(b.index)
    for column in ("churn_probability", "clv_expected"):
        assert (a[column] - b[column]).abs().max() < TOLERANCE, column


def test_several_machines_need_a_rendezvous_address():
    assert Nodes(1).torchrun_options(2, "x") == ["--standalone", "--nproc_per_node=2"]
    options = Nodes(3, "head:29400").torchrun_options(4, "custseq-abc-finetune")
    assert "--nnodes=3" in options and "--rdzv_endpoint=head:29400" in options
    assert "--rdzv_id=custseq-abc-finetune" in options and "--nproc_per_node=4" in options
    for bad in (None, "head", "head:port", ":29400", "head:0"):
        with pytest.raises(ConfigError, match="needs --rendezvous HOST:PORT"):
            Nodes(2, bad)
    with pytest.raises(ConfigError, match="nnodes must be at least 1"):
        Nodes(0)


def test_the_job_list_is_read_line_by_line_and_announces_one_rendezvous_per_step(tmp_path):
    from custseq.pipelines.nodes import JobList, read_job_list

    assert read_job_list(tmp_path / JOBS_FILE) is None
    jobs = JobList(tmp_path)
    rdzv = jobs.announce(tmp_path / "finetune" / "job.json", "finetune")
    assert rdzv == f"custseq-{jobs.run}-finetune"
    with (tmp_path / JOBS_FILE).open("a") as f:
        f.write('{"end": tr')  # a line still being written is not read
    entries = read_job_list(tmp_path / JOBS_FILE)
    assert entries == [{"run": jobs.run}, {"job": str(tmp_path / "finetune" / "job.json"), "rdzv_id": rdzv}]
    assert json.loads((tmp_path / JOBS_FILE).read_text().splitlines()[0]) == {"run": jobs.run}


def test_join_runs_each_announced_job_in_order_and_stops_at_the_end(tmp_path):
    import threading

    from custseq.pipelines.nodes import JobList, join

    ran: list[tuple[str, str]] = []
    jobs = JobList(tmp_path)

    def head() -> None:
        for step in ("pretrain", "finetune"):
            jobs.announce(tmp_path / step / "job.json", step)
        jobs.end()

    def run_job(job, rdzv_id):
        ran.append((job.parent.name, rdzv_id))

    thread = threading.Timer(0.05, head)
    thread.start()
    assert join(tmp_path, run_job, wait_seconds=30, poll_seconds=0.01) == 2
    thread.join()
    assert ran == [("pretrain", f"custseq-{jobs.run}-pretrain"), ("finetune", f"custseq-{jobs.run}-finetune")]


def test_join_ignores_a_run_that_ended_before_it_started_and_gives_up_after_its_wait(tmp_path):
    from custseq.errors import TrainingError
    from custseq.pipelines.nodes import JobList, join

    earlier = JobList(tmp_path)
    earlier.announce(tmp_path / "finetune" / "job.json", "finetune")
    earlier.end()
    ran: list[object] = []
    with pytest.raises(TrainingError, match="no training run was announced"):
        join(tmp_path, lambda job, rdzv_id: ran.append(job), wait_seconds=0.05, poll_seconds=0.01)
    assert ran == []


def test_join_ends_when_the_head_removes_its_work_folder_after_a_job(tmp_path):
    import shutil

    from custseq.pipelines.nodes import JobList, join

    work = tmp_path / "out.work"
    JobList(work).announce(work / "finetune" / "job.json", "finetune")
    # the head finished and removed its work folder while this machine's processes ran the job
    assert join(work, lambda job, rdzv_id: shutil.rmtree(work), wait_seconds=30, poll_seconds=0.01) == 1


def test_the_join_command_refuses_one_machine(tmp_path):
    from typer.testing import CliRunner

    from custseq.cli import app

    result = CliRunner().invoke(app, ["join", str(tmp_path / "out"), "--nnodes", "1"])
    assert result.exit_code != 0 and "pass --nnodes 2 or more" in result.output
    result = CliRunner().invoke(app, ["join", str(tmp_path / "out"), "--nnodes", "2"])
    assert result.exit_code != 0 and "needs --rendezvous HOST:PORT" in result.output
