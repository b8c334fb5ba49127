"""Distributed runs: workers sharing a luigid central scheduler, luigi resources per
target, and one model built once whoever runs it."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import luigi.configuration
import pytest

from dbluigi.targets import open_target
from tests.buildkit import build_json, cli_process, copy_example, query
from tests.test_build import write_project

pytestmark = pytest.mark.postgres


@pytest.fixture
def luigid(tmp_path: Path) -> Iterator[str]:
    """A luigid central scheduler on a free loopback port; its URL."""
    (tmp_path / "luigid-logs").mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from luigi.cmdline import luigid; luigid()",
            "--address",
            "127.0.0.1",
            "--port",
            str(port),
            "--logdir",
            str(tmp_path / "luigid-logs"),
            "--state-path",
            str(tmp_path / "luigid.pickle"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            _luigid_tasks(url, "DONE")
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise AssertionError("luigid did not start") from None
            time.sleep(0.2)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _luigid_tasks(url: str, status: str) -> dict[str, dict]:
    query_string = urllib.parse.urlencode({"data": json.dumps({"status": status})})
    with urllib.request.urlopen(f"{url}/api/task_list?{query_string}", timeout=10) as response:
        return json.loads(response.read())["response"]


def test_two_workers_share_a_luigid_scheduler(tmp_path: Path, pg_url: str, luigid: str) -> None:
    project = copy_example(tmp_path)
    workers = [
        cli_process(
            "build",
            "--json",
            "--workers",
            "2",
            "--scheduler-url",
            luigid,
            project=project,
            target=pg_url,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    payloads = [json.loads(out) for out, _ in outputs]
    built = query(
        pg_url,
        project,
        "select model from dbluigi.task_runs where status = 'success' "
        "and reason <> 'built by another worker'",
    )
    models = [row[0] for row in built]
    assert len(models) == 12 and len(set(models)) == 12  # each model ran once, in one worker
    assert query(pg_url, project, "select count(*) from dbluigi.models") == [
        (12,)
    ]  # graph complete
    statuses = {r["status"] for p in payloads for r in p["tasks"]}
    # a worker that plans after the other published some models finds them up to date
    assert statuses <= {"success", "elsewhere", "up to date"}
    done = _luigid_tasks(luigid, "DONE")
    model_tasks = {t["name"] for t in done.values() if "kind" in t["params"]}
    assert model_tasks == set(
        models
    )  # one luigid task per model: the same identity in both workers
    code, payload = build_json("--scheduler-url", luigid, project=project, target=pg_url)
    assert code == 0 and all(r["status"] == "up to date" for r in payload["tasks"])


def test_luigid_names_each_task_by_its_model_and_partition_with_its_kind(
    tmp_path: Path, pg_url: str, luigid: str
) -> None:
    write_project(
        tmp_path,
        {
            "staging/agencies.sql": "select 1 as id",
            "reporting/totals.sql": "-- kind: view\nselect count(*) as n from staging.agencies",
            # a check reading a model its model does not depend on: it waits for it settled
            "reporting/totals.check.sql": "select region from staging.sales where region = ''",
            "staging/sales.sql": "-- partition: region in ('gb', '[us]')\n"
            "select '{{ region }}' as region, id from staging.agencies",
        },
    )
    code, payload = build_json("--scheduler-url", luigid, project=tmp_path, target=pg_url)
    assert code == 0, payload
    done = _luigid_tasks(luigid, "DONE")
    kinds = {t["name"]: t["params"]["kind"] for t in done.values() if "kind" in t["params"]}
    assert kinds == {
        "staging.agencies": "table",
        "reporting.totals": "view",
        "staging.sales": "table",
        "staging.sales[gb]": "table",
        "staging.sales[[us]]": "table",
    }
    assert "staging.sales settled" in {t["name"] for t in done.values()}
    shown = {t["name"]: t["display_name"] for t in done.values()}
    assert shown["reporting.totals"].startswith("reporting.totals(")
    assert "kind=view" in shown["reporting.totals"]
    # luigid's search (over the display name) finds a model by its name
    query_string = urllib.parse.urlencode(
        {"data": json.dumps({"status": "DONE", "search": "staging.sales"})}
    )
    with urllib.request.urlopen(f"{luigid}/api/task_list?{query_string}", timeout=10) as response:
        found = json.loads(response.read())["response"]
    assert {t["name"] for t in found.values()} == {
        "staging.sales",
        "staging.sales settled",
        "staging.sales[gb]",
        "staging.sales[[us]]",
    }
    # the graph luigid draws names the nodes the same way
    graph_query = urllib.parse.urlencode({"data": json.dumps({"task_id": _root_id(done)})})
    with urllib.request.urlopen(f"{luigid}/api/dep_graph?{graph_query}", timeout=10) as response:
        graph = json.loads(response.read())["response"]
    assert set(kinds) <= {t["name"] for t in graph.values()}


def test_resource_note_is_printed_before_the_run_with_its_brackets(
    tmp_path: Path, pg_url: str, luigid: str
) -> None:
    from tests.buildkit import cli

    write_project(tmp_path, {"a.sql": "select 1 as id", "b.sql": "select id from main.a"})
    code, output = cli("build", "--scheduler-url", luigid, project=tmp_path, target=pg_url)
    assert code == 0, output
    note = "note: luigid runs as many tasks at once on this target as its [resources] dbluigi_"
    assert output.count(note) == 1, output  # said once, not again after the run
    assert output.index(note) < output.index("success main.a"), output


def _root_id(tasks: dict[str, dict]) -> str:
    (root,) = [task_id for task_id, t in tasks.items() if t["name"] == "DbluigiRun"]
    return root


def test_tasks_hold_a_resource_named_for_the_target(tmp_path: Path, pg_url: str) -> None:
    target = open_target(pg_url, project_dir=tmp_path)
    database = pg_url.rsplit("/", 1)[1]
    assert target.resource == f"dbluigi_127_0_0_1_5432_{database}"
    write_project(
        tmp_path,
        {
            f"w{i}.sql": "select clock_timestamp() as t from (select pg_sleep(0.3)) as s"
            for i in range(3)
        },
    )
    config = luigi.configuration.get_config()
    config.set("resources", target.resource, "1")  # at most one query at a time on this target
    try:
        code, payload = build_json("--workers", "3", project=tmp_path, target=pg_url)
    finally:
        config.remove_option("resources", target.resource)
    assert code == 0, payload
    spans = query(
        pg_url,
        tmp_path,
        "select started_at, started_at + duration_s * interval '1 second' from dbluigi.task_runs "
        "where run_id = %s order by started_at",
        [payload["run_id"]],
    )
    assert len(spans) == 3
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end  # never two at once, despite three workers


def test_bad_scheduler_url_is_an_error(tmp_path: Path) -> None:
    from tests.buildkit import cli

    write_project(tmp_path, {"a.sql": "select 1 as id"})
    code, output = cli("build", "--scheduler-url", "luigid:8082", project=tmp_path, target="duckdb")
    assert code == 2 and "--scheduler-url 'luigid:8082' is not an http(s) URL" in output


def test_rebuild_through_luigid_runs_again_and_toml_names_the_scheduler(
    tmp_path: Path, pg_url: str, luigid: str
) -> None:
    write_project(
        tmp_path,
        {
            "dbluigi.toml": f'[scheduler]\nurl = "{luigid}"\n',
            "a.sql": "select 1 as id",
            "b.sql": "select * from main.a",
        },
    )
    code, payload = build_json(project=tmp_path, target=pg_url)  # the scheduler from dbluigi.toml
    assert code == 0, payload
    assert any("luigid" in note for note in payload["notes"])
    code, payload = build_json("a+", project=tmp_path, target=pg_url, command="rebuild")
    assert code == 0, payload
    assert {r["model"]: r["status"] for r in payload["tasks"]} == {
        "main.a": "success",
        "main.b": "success",
    }
    generations = query(
        pg_url, tmp_path, "select model, generation from dbluigi.models order by model"
    )
    assert generations == [("main.a", 2), ("main.b", 2)]


def test_check_wait_is_released_through_luigid_when_the_model_read_fails(
    tmp_path: Path, pg_url: str, luigid: str
) -> None:
    """A check of z reads b, which z does not depend on; b's upstream fails. luigid knows
    only dependencies, so the worker that saw the failure marks z's wait done itself."""
    write_project(
        tmp_path,
        {
            "dbluigi.toml": f'[scheduler]\nurl = "{luigid}"\n',
            "m/src.csv": "id\n1\n1\n",
            "m/a.sql": "-- check: unique(id)\nselect id from src",
            "m/b.sql": "select id from a",
            "m/y.sql": "select distinct id from src",
            "m/z.sql": "select id from y",
            "m/z.check.sql": "select z.id from z left join b on b.id = z.id where false",
        },
    )
    code, payload = build_json(project=tmp_path, target=pg_url)
    assert code == 1, payload
    assert {r["model"]: r["status"] for r in payload["tasks"]} == {
        "m.src": "success",
        "m.a": "failed",
        "m.b": "skipped",
        "m.y": "success",
        "m.z": "success",
    }
    assert query(pg_url, tmp_path, "select id from m.z") == [(1,)]
