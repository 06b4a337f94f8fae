"""Deployment files: the compose file is valid and every service runs a command the project has.

This machine has no Docker engine, so the images are not built here; see README "Tests".
"""
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = {"migrate", "web", "worker", "beat", "mail"}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_every_service_with_health_checks_and_volumes(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis"} | APP_SERVICES
    for name in ("postgres", "redis", "web", "worker", "mail"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    assert set(compose["volumes"]) == {"pgdata", "redisdata", "maildata"}
    for name in APP_SERVICES:
        assert "maildata:/data" in services[name]["volumes"]
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgres://")


@pytest.mark.parametrize("service", sorted(APP_SERVICES))
def test_every_service_command_exists_in_the_project(compose, service):
    command = compose["services"][service]["command"]
    if command[:2] == ["python", "manage.py"]:
        assert command[2] in get_commands()
    elif command[0] == "celery":
        assert command[1:3] == ["-A", "config"] and command[3] in ("worker", "beat")
        assert importlib.import_module("config.celery").app.main == "config"
    else:
        assert command[:2] == ["gunicorn", "config.wsgi"]
        assert callable(importlib.import_module("config.wsgi").application)


def test_dockerfile_installs_requirements_and_serves_static_files():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert "collectstatic" in dockerfile


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {
        **os.environ,
        "SECRET_KEY": "x" * 20 + "production-secret-key-with-enough-entropy-1234567890",
        "HTTPS": "1",
        "ALLOWED_HOSTS": "mail.example.org",
        "MAIL_VAR_DIR": str(tmp_path),
        "DEBUG": "0",
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "System check identified no issues (0 silenced).\n"


def test_healthz_answers_ok_when_the_database_does(client, db):
    response = client.get("/healthz")
    assert (response.status_code, response.content) == (200, b"ok\n")
