"""The deployment kit: the image build (linted, its entry point run outside a container), the
compose file, and the Kubernetes and systemd forms of the schedule, checked as their tools do."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import TOKEN
from sqlalchemy import create_engine, select
from typer.testing import CliRunner

from catalog.cli import app
from catalog.db.models import RUN
from catalog.schedule import IMAGE_UID

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
BIN = str(Path(sys.executable).parent)


# -- the image -------------------------------------------------------------------------------


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def last(name: str) -> str:
    return [args for instruction, args in instructions() if instruction == name][-1]


def image_env(data: Path, etc: Path) -> dict[str, str]:
    """The image's ENV with its directories moved under the test's own, PATH to this venv."""
    pairs = re.findall(r"(\w+)=(\S+)", " ".join(a for i, a in instructions() if i == "ENV"))
    env = {key: value for key, value in pairs if not key.startswith("PIP_")}
    moved = {k: v.replace("/data", str(data)).replace("/etc", str(etc)) for k, v in env.items()}
    moved["PATH"] = (
        env["PATH"].replace("/opt/catalog/bin", BIN).replace("$PATH", os.environ["PATH"])
    )
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}, **moved}


def test_the_dockerfile_passes_hadolint():
    out = subprocess.run([HADOLINT, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_does_catch_a_bad_dockerfile(tmp_path: Path):
    """Proves the lint above is live: an unpinned base image and root at run time are flagged."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /src && pip install .\n")
    out = subprocess.run([HADOLINT, str(bad)], capture_output=True, text=True, check=False)
    assert out.returncode != 0 and "DL3007" in out.stdout


def test_the_image_is_multi_stage_non_root_with_the_catalog_in_a_volume():
    steps = instructions()
    froms = [args for instruction, args in steps if instruction == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build")
    assert any("--from=build" in a for i, a in steps if i == "COPY")
    assert last("USER") == f"{IMAGE_UID}:{IMAGE_UID}"
    assert json.loads(last("VOLUME")) == ["/data"]
    assert json.loads(last("ENTRYPOINT")) == ["catalog"]
    assert json.loads(last("CMD"))[:2] == ["schedule", "run"]
    assert "XDG_DATA_HOME=/data" in " ".join(a for i, a in steps if i == "ENV")


def test_the_image_commands_run_outside_a_container(tmp_path: Path):
    """`docker run IMAGE demo`, then the HEALTHCHECK, as the image would run them."""
    data, etc = tmp_path / "data", tmp_path / "etc"
    data.mkdir()
    env = {**image_env(data, etc), "CATALOG_SCHEDULE_SYNC": "0 3 * * *"}  # as compose.yaml does
    entry = json.loads(last("ENTRYPOINT"))
    demo = subprocess.run(
        [*entry, "demo", "--items", "40", "--json"], env=env, cwd=data, capture_output=True,
        text=True, check=False, timeout=120,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    assert json.loads(demo.stdout)["status"] == "ok"
    assert (data / "catalog" / "demo.db").is_file()  # in the volume
    health = json.loads(last("HEALTHCHECK").split("CMD", 1)[1])
    probe = subprocess.run(health, env=env, cwd=data, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    [job] = json.loads(probe.stdout)["jobs"]  # healthy before the first sync made the catalog
    assert job["job"] == "sync" and job["last_run"] is None
    assert not (data / "catalog" / "catalog.db").exists()  # a probe writes nothing
    made = subprocess.run([*entry, "db", "upgrade"], env=env, cwd=data, capture_output=True)
    assert made.returncode == 0, made.stderr
    assert (data / "catalog" / "catalog.db").is_file()  # the image's default catalog: the volume
    probe = subprocess.run(health, env=env, cwd=data, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr


def test_the_image_default_command_runs_the_schedule(database_url: str, fake: Any, tmp_path: Path):
    """The image's ENTRYPOINT + CMD, bounded to one run, against the fake media server."""
    data, etc = tmp_path / "data", tmp_path / "etc"
    data.mkdir()
    env = image_env(data, etc) | {
        "CATALOG_DATABASE_URL": database_url, "CATALOG_SERVER_URL": fake.url,
        "CATALOG_SERVER_TOKEN": TOKEN, "CATALOG_SCHEDULE_SYNC": "* * * * * *",
    }  # fmt: skip
    argv = [*json.loads(last("ENTRYPOINT")), *json.loads(last("CMD")), "--max-runs", "1"]
    out = subprocess.run(argv, env=env, cwd=data, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    engine = create_engine(database_url)
    with engine.connect() as conn:
        runs = conn.execute(select(RUN.c.command, RUN.c.status)).all()
    engine.dispose()
    assert [tuple(r) for r in runs] == [("sync", "ok")]


def test_compose_runs_the_schedule_against_postgresql():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    db, catalog = compose["services"]["db"], compose["services"]["catalog"]
    assert db["image"].startswith("postgres:") and db["healthcheck"]["test"][1] == "pg_isready"
    assert catalog["build"] == "."
    assert catalog["command"] == json.loads(last("CMD"))
    assert catalog["environment"]["CATALOG_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@db:5432/" in catalog["environment"]["CATALOG_DATABASE_URL"]
    assert catalog["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert "catalog-data:/data" in catalog["volumes"]


# -- Kubernetes --------------------------------------------------------------------------------


@pytest.fixture
def scheduled(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(
        f'database_url = "{database_url}"\n[schedule]\nsync = "0 3 * * *"\nretag = "0 5 * * *"\n'
    )
    return path


def kubernetes(config: Path, *args: str) -> Any:
    base = ["schedule", "kubernetes", "--config", str(config), "--image", "reg.lan/catalog:1"]
    return CliRunner().invoke(app, [*base, *args])


def pods(text: str) -> list[dict[str, Any]]:
    return [d["spec"]["jobTemplate"]["spec"] for d in yaml.safe_load_all(text) if d]


def test_cronjobs_pass_the_kubernetes_schema(scheduled: Path):
    out = kubernetes(scheduled, "--time-zone", "Europe/Paris", "--config-map", "catalog-config",
                     "--cpu-limit", "1")  # fmt: skip
    assert out.exit_code == 0, out.stderr
    docs = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    assert len(docs) == 2
    for doc in docs:
        kubernetes_validate.validate(doc, "1.27.0", strict=True)


def test_retag_workers_run_as_one_parallel_job_on_postgresql_only(
    scheduled: Path, database_url: str
):
    out = kubernetes(scheduled, "--retag-workers", "3")
    if database_url.startswith("sqlite"):
        assert out.exit_code == 2 and "Traceback" not in out.stderr
        assert "--retag-workers 3: the catalog is SQLite" in out.stderr
        assert out.stdout == ""
        return
    assert out.exit_code == 0, out.stderr
    docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(out.stdout) if d}
    retag = docs["catalog-retag"]["spec"]["jobTemplate"]["spec"]
    assert retag["parallelism"] == 3 and "completions" not in retag  # a work queue
    assert "parallelism" not in docs["catalog-sync"]["spec"]["jobTemplate"]["spec"]
    assert docs["catalog-retag"]["spec"]["concurrencyPolicy"] == "Forbid"  # one run at a time
    for doc in docs.values():
        kubernetes_validate.validate(doc, "1.27.0", strict=True)
    assert "parallelism" not in kubernetes(scheduled).stdout  # one pod unless asked


def test_retag_workers_need_a_scheduled_retag(tmp_path: Path):
    config = tmp_path / "sync-only.toml"
    config.write_text('database_url = "postgresql://db/catalog"\n[schedule]\nsync = "0 3 * * *"\n')
    out = kubernetes(config, "--retag-workers", "2")
    assert out.exit_code == 2 and "no retag is scheduled" in out.stderr


def test_the_schema_check_catches_a_misspelt_field(scheduled: Path):
    doc = next(d for d in yaml.safe_load_all(kubernetes(scheduled).stdout) if d)
    doc["spec"]["jobTemplate"]["spec"]["activeDeadlineSecond"] = 60
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, "1.27.0", strict=True)


def test_cronjobs_are_bounded_in_time_and_resources_and_locked_down(scheduled: Path):
    out = kubernetes(scheduled, "--active-deadline", "7200", "--memory-limit", "512Mi")
    for job in pods(out.stdout):
        assert job["activeDeadlineSeconds"] == 7200 and job["backoffLimit"] == 0
        pod = job["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == IMAGE_UID
        container = pod["containers"][0]
        assert container["resources"] == {
            "requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"},
        }  # fmt: skip
        assert container["securityContext"] == {
            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }  # fmt: skip
        tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
        volume = next(v for v in pod["volumes"] if v["name"] == tmp["name"])
        assert volume == {"name": tmp["name"], "emptyDir": {}}
    default = pods(kubernetes(scheduled).stdout)[0]
    assert default["activeDeadlineSeconds"] == 6 * 3600


def test_a_sqlite_catalog_on_a_pod_is_warned_about(scheduled: Path, database_url: str):
    out = kubernetes(scheduled)
    assert out.exit_code == 0
    warned = "warning: the catalog is SQLite" in out.stderr
    assert warned == database_url.startswith("sqlite")
    assert "warning" not in out.stdout


def test_time_zone_help_says_which_kubernetes_it_needs():
    out = CliRunner().invoke(app, ["schedule", "kubernetes", "--help"], env={"COLUMNS": "200"})
    assert "Kubernetes 1.27" in " ".join(out.stdout.split())


# -- systemd -----------------------------------------------------------------------------------

# systemd expands %h and $HOME, %1 is a fatal error, spaces split words; quotes and backslashes
# it allows in arguments only.
AWKWARD_PROGRAM = "my %h 50%1 $HOME ${USER} dir"
AWKWARD_CONFIG = 'conf %% it\'s "q" \\ dir'


def systemd_split(line: str) -> list[str]:
    """ExecStart= read back as systemd reads it: words, quotes, C escapes, %% and $$."""
    words = [
        re.sub(r"\\(.)", r"\1", m[1] if m[1] is not None else m[2])
        for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|(\S+)', line)
    ]
    words = [word.replace("%%", "%") for word in words]
    return words[:1] + [word.replace("$$", "$") for word in words[1:]]


@pytest.fixture
def awkward(tmp_path: Path) -> tuple[Path, Path]:
    """An executable and a config file in directories whose names systemd would mangle."""
    (tmp_path / AWKWARD_PROGRAM).mkdir()
    (tmp_path / AWKWARD_CONFIG).mkdir()
    exe = tmp_path / AWKWARD_PROGRAM / "catalog"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    config = tmp_path / AWKWARD_CONFIG / "catalog.toml"
    config.write_text('[schedule]\nsync = "0 3 * * *"\nnormalize = "30 4 * * 0"\n')
    return exe, config


def write_units(exe: Path, config: Path, out_dir: Path, *args: str) -> Any:
    argv = ["schedule", "systemd", "--config", str(config), "--executable", str(exe),
            "--output-dir", str(out_dir), *args]  # fmt: skip
    out = CliRunner().invoke(app, argv)
    assert out.exit_code == 0, out.stderr
    return out


def unit_values(path: Path, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in path.read_text().splitlines()
            if line.startswith(f"{key}=")]  # fmt: skip


def test_awkward_paths_survive_the_unit_syntax(awkward: tuple[Path, Path], tmp_path: Path):
    exe, config = awkward
    write_units(exe, config, tmp_path / "units")
    [line] = unit_values(tmp_path / "units" / "catalog-sync.service", "ExecStart")
    argv = systemd_split(line)
    assert argv[0] == str(exe) and argv[1] == "sync"
    assert argv[argv.index("--config") + 1] == str(config)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_systemd_analyze_verifies_the_units(awkward: tuple[Path, Path], tmp_path: Path, user):
    exe, config = awkward
    out_dir = tmp_path / "units"
    out = write_units(exe, config, out_dir, *(["--user"] if user else []))
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    command = ["systemd-analyze", *(["--user"] if user else []), "verify"]
    verify = subprocess.run(
        [*command, *sorted(str(p) for p in out_dir.iterdir())], capture_output=True, text=True,
        check=False, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == "", verify.stderr
    timer = out_dir / "catalog-sync.timer"
    assert unit_values(timer, "WantedBy") == ["default.target" if user else "timers.target"]
    service = (out_dir / "catalog-sync.service").read_text()
    assert ("network-online.target" in service) is not user
    assert "User=" not in service
    hint = " ".join(out.stderr.split())
    assert ("systemctl --user daemon-reload" in hint) is user


def test_unescaped_specifiers_are_what_systemd_refuses(awkward: tuple[Path, Path], tmp_path):
    """The check above can fail: the same unit without %-escaping is a fatal unit error."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("needs systemd-analyze")
    exe, config = awkward
    out_dir = tmp_path / "units"
    write_units(exe, config, out_dir)
    service = out_dir / "catalog-sync.service"
    service.write_text(service.read_text().replace("%%", "%"))
    verify = subprocess.run(["systemd-analyze", "verify", str(service)], capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert verify.returncode != 0 and "specifier" in verify.stderr


def test_a_program_path_systemd_would_refuse_is_one_line_exit_2(tmp_path: Path):
    config = tmp_path / "catalog.toml"
    config.write_text('[schedule]\nsync = "0 3 * * *"\n')
    exe = tmp_path / "it's" / "catalog"
    argv = ["schedule", "systemd", "--config", str(config), "--executable", str(exe)]
    out = CliRunner().invoke(app, argv)
    assert out.exit_code == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "systemd refuses a program path with a quote" in errors[0]
