"""Real servers for the Django tests: redis-server, memcached and PostgreSQL on free loopback
ports in temporary directories, stopped when the test session ends.

PostgreSQL's ``initdb`` and ``postgres`` refuse to run as root, so as root they run as
``nobody`` (``runuser``) in a directory that user owns; memcached as root needs ``-u``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

POSTGRES_BIN = Path(os.environ.get("CACHEWARM_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(ready: Callable[[], bool], what: str, log: Path | None, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.05)
    text = log.read_text(errors="replace") if log and log.exists() else ""
    raise RuntimeError(f"{what} did not start within {seconds}s\n{text}")


def _accepts(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_redis() -> Server:
    directory = Path(tempfile.mkdtemp(prefix="cachewarm-redis-"))
    port = free_port()
    log = directory / "redis.log"
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--logfile",
            str(log),
        ],
        stdout=subprocess.DEVNULL,
    )
    _wait(lambda: _accepts(port), "redis-server", log)
    return Server("redis", port, process, directory, log)


def start_memcached() -> Server:
    directory = Path(tempfile.mkdtemp(prefix="cachewarm-memcached-"))
    port = free_port()
    log = directory / "memcached.log"
    argv = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    _wait(lambda: _accepts(port), "memcached", log)
    return Server("memcached", port, process, directory, log)


def start_postgres(password: str) -> Server:
    """PostgreSQL with password (scram) authentication for user ``cachewarm``."""
    directory = Path(tempfile.mkdtemp(prefix="cachewarm-postgres-"))
    data = directory / "data"
    log = directory / "postgres.log"
    pwfile = directory / "pw"
    pwfile.write_text(password + "\n")
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(directory, "nobody", "nogroup")
        shutil.chown(pwfile, "nobody", "nogroup")
        prefix = ["runuser", "-u", "nobody", "--"]
    subprocess.run(
        [
            *prefix,
            str(POSTGRES_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "cachewarm",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    port = free_port()
    with open(log, "wb") as out:
        if os.geteuid() == 0:
            shutil.chown(log, "nobody", "nogroup")
        process = subprocess.Popen(
            [
                *prefix,
                str(POSTGRES_BIN / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(directory),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    _wait(lambda: _accepts(port), "postgres", log)
    return Server("postgres", port, process, directory, log, {"password": password})
