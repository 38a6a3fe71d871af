"""The command line: one-line configuration errors and concurrent `bookchat migrate` runs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

import asyncpg
from typer.testing import CliRunner

from bookchat.cli import app
from tests.conftest import _with_database, share_models

runner = CliRunner()


def test_a_bad_database_url_is_one_line_naming_the_variable() -> None:
    result = runner.invoke(app, ["serve"], env={"BOOKCHAT_DATABASE_URL": "nonsense"})
    assert result.exit_code == 2
    output = result.output.strip()
    assert "BOOKCHAT_DATABASE_URL" in output
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1


def test_several_workers_need_a_qdrant_server() -> None:
    result = runner.invoke(app, ["serve", "--workers", "2"], env={"BOOKCHAT_DATABASE_URL": "postgresql://x@y/z"})
    assert result.exit_code == 2
    assert "BOOKCHAT_QDRANT_URL" in result.output


def test_migrate_reports_an_unreachable_database_in_one_line() -> None:
    result = runner.invoke(app, ["migrate"], env={"BOOKCHAT_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"})
    assert result.exit_code == 1
    assert "cannot connect to PostgreSQL" in result.output
    assert "Traceback" not in result.output


async def test_two_migrate_processes_at_once_both_succeed(postgres_server_url: str) -> None:
    name = f"bookchat_cli_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {**os.environ, "BOOKCHAT_DATABASE_URL": _with_database(postgres_server_url, name)}
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bookchat", "migrate", env=env, stdout=asyncio.subprocess.PIPE
            )
            for _ in range(2)
        ]
        outputs = [(await process.communicate())[0].decode() for process in processes]
        assert [process.returncode for process in processes] == [0, 0]
        counts = sorted(int(output.split()[1]) for output in outputs)
        assert counts[0] == 0, outputs
        assert counts[1] >= 1, outputs
        conn = await asyncpg.connect(_with_database(postgres_server_url, name))
        versions = await conn.fetch("SELECT version FROM schema_migrations")
        await conn.close()
        assert len(versions) == counts[1]
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def test_eval_scores_a_beir_folder_and_writes_json(tmp_path: Path, models_dir: Path) -> None:
    from tests.retrieval.test_evaluation import write_beir

    beir = write_beir(tmp_path / "tiny")
    output = tmp_path / "results.json"
    env = {"BOOKCHAT_DATA_DIR": str(share_models(tmp_path / "data", models_dir))}
    result = runner.invoke(app, ["eval", "--beir", str(beir), "--mode", "hybrid", "--output", str(output)], env=env)
    assert result.exit_code == 0, result.output
    assert "ndcg" in result.output.lower()
    scores = json.loads(output.read_text())["modes"]["hybrid"]
    assert 0.0 <= scores["ndcg@10"] <= 1.0


def test_eval_names_a_broken_folder_in_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "--beir", str(tmp_path)], env={"BOOKCHAT_DATA_DIR": str(tmp_path / "d")})
    assert result.exit_code == 2
    assert "corpus.jsonl" in result.output
    assert "Traceback" not in result.output


def test_ingest_search_ask_and_users_from_the_command_line(tmp_path: Path, database_url: str, models_dir: Path) -> None:
    book = tmp_path / "book"
    book.mkdir()
    (book / "charging.md").write_text(
        "---\ntitle: Charging\n---\n\n# Charging\n\n## The dock\n\nThe robot charges at its dock in forty minutes.\n"
    )
    (book / "sensors.md").write_text("# Sensors\n\nWipe the lidar window with a dry microfibre cloth.\n")
    collection = f"cli_{uuid.uuid4().hex[:8]}"
    env = {
        "BOOKCHAT_DATA_DIR": str(share_models(tmp_path / "data", models_dir)),
        "BOOKCHAT_DATABASE_URL": database_url,
        "BOOKCHAT_COLLECTION": collection,
    }
    command = ["ingest", str(book), "--base-url", "https://book.example.org/docs"]
    first = runner.invoke(app, command, env=env)
    assert first.exit_code == 0, first.output
    assert "2 added, 0 updated, 0 unchanged, 0 removed documents" in first.output

    again = runner.invoke(app, command, env=env)
    assert again.exit_code == 0, again.output
    assert "0 added, 0 updated, 2 unchanged" in again.output

    found = runner.invoke(app, ["search", "how long does charging take", "--limit", "1"], env=env)
    assert found.exit_code == 0, found.output
    assert "Charging › The dock" in found.output
    assert "https://book.example.org/docs/charging#the-dock" in found.output

    answered = runner.invoke(app, ["ask", "How long does the robot take to charge?"], env=env)
    assert answered.exit_code == 0, answered.output
    assert "forty minutes" in answered.output
    assert "[1]" in answered.output

    email = f"admin-{uuid.uuid4().hex[:8]}@example.org"
    created = runner.invoke(
        app, ["users", "create", "--email", email, "--password", "a long and unusual passphrase", "--admin"], env=env
    )
    assert created.exit_code == 0, created.output
    assert f"created {email} (admin)" in created.output
    disabled = runner.invoke(app, ["users", "disable", "--email", email], env=env)
    assert disabled.exit_code == 0, disabled.output
    assert "is now disabled" in disabled.output
    enabled = runner.invoke(app, ["users", "enable", "--email", email], env=env)
    assert "is now enabled" in enabled.output
    demoted = runner.invoke(app, ["users", "set-role", "--email", email, "--role", "user"], env=env)
    assert demoted.exit_code == 0, demoted.output
    assert "is now user" in demoted.output
    duplicate = runner.invoke(
        app, ["users", "create", "--email", email.upper(), "--password", "a long and unusual passphrase"], env=env
    )
    assert duplicate.exit_code == 1
    assert "Traceback" not in duplicate.output


def test_search_refuses_an_unknown_mode() -> None:
    result = runner.invoke(app, ["search", "x", "--mode", "fuzzy"])
    assert result.exit_code == 2
    assert "--mode" in result.output
