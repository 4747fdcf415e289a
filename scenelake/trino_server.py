"""Lifecycle of the embedded single-node Trino: render its config, start, wait, stop, status.

In production Trino is a cluster run by its own deployment; this module only manages the local
server of the embedded environment (and of the test suite, on its own port and state folder).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from scenelake import access
from scenelake.settings import Settings, read_versions

TEMPLATES = Path(__file__).resolve().parent / "trino_etc"
PID_FILE_GRACE_S = 30.0


class TrinoServerError(Exception):
    """Trino could not be started or reached; the message says what to do."""


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    ready: bool
    detail: str


class TrinoServer:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.pins = read_versions()
        self.root = settings.state_dir / "trino"

    # --- paths -------------------------------------------------------------------------
    @property
    def install_dir(self) -> Path:
        return self.settings.cache_dir / f"trino-server-{self.pins['TRINO_VERSION']}"

    @property
    def etc_dir(self) -> Path:
        return self.root / "etc"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def pid_file(self) -> Path:
        return self.root / "launcher.pid"

    @property
    def server_log(self) -> Path:
        return self.root / "log" / "server.log"

    @property
    def url(self) -> str:
        return f"http://{self.settings.trino_host}:{self.settings.trino_port}"

    def java_home(self) -> Path:
        home = Path(os.environ.get("SCENELAKE_TRINO_JAVA_HOME") or self.pins["TRINO_JAVA_HOME"])
        if not (home / "bin" / "java").exists():
            raise TrinoServerError(
                f"JDK 25 for Trino not found at {home}: install Temurin 25 there or set "
                "SCENELAKE_TRINO_JAVA_HOME to a JDK 25 folder")
        return home

    # --- configuration -----------------------------------------------------------------
    def render_config(self) -> None:
        if not self.settings.trino_local:
            raise TrinoServerError(
                f"the profile {self.settings.env!r} has a Trino cluster run by its own deployment (deploy/); "
                "`scenelake trino up` only manages the single node of the embedded and cluster-local profiles")
        (self.root / "metastore").mkdir(parents=True, exist_ok=True)  # used by a local lake's file metastore
        metastore = metastore_properties(self.settings, self.root / "metastore")
        values = {
            "port": str(self.settings.trino_port),
            "heap": self.settings.trino_heap,
            "query_max_memory_per_node": self.settings.trino_query_max_memory_per_node,
            "data_dir": str(self.data_dir),
            "metastore": metastore,
            "filesystem": filesystem_properties(self.settings),
        }
        for template in TEMPLATES.rglob("*.tmpl"):
            target = self.etc_dir / template.relative_to(TEMPLATES).with_suffix("")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(template.read_text().format(**values))
        extra = self.settings.trino_jvm_options.split()
        if extra:
            jvm = self.etc_dir / "jvm.config"
            jvm.write_text(jvm.read_text().rstrip("\n") + "\n" + "\n".join(extra) + "\n")
        # Who may read what: generated from the contracts' PII flags (scenelake.access).
        access.write(self.settings, self.etc_dir)

    # --- lifecycle ---------------------------------------------------------------------
    def _launcher(self, command: str) -> subprocess.CompletedProcess[str]:
        launcher = self.install_dir / "bin" / "launcher"
        if not launcher.exists():
            raise TrinoServerError(f"Trino is not installed in {self.install_dir}: run `make setup`")
        if not self.settings.is_local_lake:
            from scenelake.objectstore import export_credentials

            export_credentials(self.settings)  # the catalog reads them as ${ENV:...}
        env = {**os.environ, "JAVA_HOME": str(self.java_home())}
        env["PATH"] = f"{env['JAVA_HOME']}/bin:{env.get('PATH', '')}"
        return subprocess.run(
            [str(launcher), command,
             f"--etc-dir={self.etc_dir}", f"--data-dir={self.data_dir}",
             f"--pid-file={self.pid_file}",
             f"--launcher-log-file={self.root / 'log' / 'launcher.log'}",
             f"--server-log-file={self.server_log}"],
            capture_output=True, text=True, env=env)

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid

    def _info(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"{self.url}/v1/info", timeout=2) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def _port_taken(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            return sock.connect_ex((self.settings.trino_host, self.settings.trino_port)) == 0

    def status(self) -> ServerStatus:
        pid = self._pid()
        if pid is None:
            return ServerStatus(False, None, False, f"Trino is not running (port {self.settings.trino_port})")
        info = self._info()
        ready = bool(info) and not info.get("starting", True)  # type: ignore[union-attr]
        state = "ready" if ready else "starting"
        return ServerStatus(True, pid, ready, f"Trino {state} at {self.url} (pid {pid}, log {self.server_log})")

    def up(self, timeout: float = 180.0) -> ServerStatus:
        current = self.status()
        if current.running:
            return self.wait_ready(timeout)
        if self._port_taken():
            raise TrinoServerError(
                f"port {self.settings.trino_port} is in use by another process: stop it, or set "
                "SCENELAKE_TRINO_PORT to a free port")
        self.render_config()
        self.server_log.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.server_log.write_text("")
        started = self._launcher("start")
        if started.returncode != 0:
            raise TrinoServerError(
                f"the Trino launcher failed: {(started.stderr or started.stdout).strip()[:300]}")
        ready = self.wait_ready(timeout)
        try:
            self._ensure_key_table(timeout)
        except Exception:
            self.down()  # a server this call started and cannot use must not outlive it
            raise
        return ready

    def _ensure_key_table(self, timeout: float) -> None:
        """The masks' key (scenelake.access). Right after start the coordinator may not have
        registered itself as a worker yet (NO_NODES_AVAILABLE): retry until it has."""
        import trino

        deadline = time.monotonic() + timeout
        while True:
            try:
                access.ensure_key_table(self.settings)
                return
            except trino.exceptions.TrinoQueryError as exc:
                if exc.error_name != "NO_NODES_AVAILABLE" or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def wait_ready(self, timeout: float) -> ServerStatus:
        deadline = time.monotonic() + timeout
        # The launcher returns before its daemon has written the pid file; on a busy machine that
        # takes seconds, and "no pid file yet" is not "exited".
        pid_file_due = time.monotonic() + PID_FILE_GRACE_S
        while time.monotonic() < deadline:
            current = self.status()
            if not current.running and not self.pid_file.exists() and time.monotonic() < pid_file_due:
                time.sleep(1)
                continue
            if not current.running:
                raise TrinoServerError(
                    f"Trino exited while starting: read {self.server_log} "
                    f"(last line: {self._last_log_line()})")
            if current.ready:
                return current
            time.sleep(1)
        raise TrinoServerError(f"Trino not ready after {timeout:.0f}s: read {self.server_log}")

    def _last_log_line(self) -> str:
        try:
            lines = [ln for ln in self.server_log.read_text().splitlines() if ln.strip()]
        except OSError:
            return "no log"
        # Start-up (configuration) errors are a numbered list "1) ...", "2) ..."; the first one
        # names the property and the bad value.
        config_errors = [ln for ln in lines if re.match(r"^\d+\) \S", ln)]
        errors = config_errors or [ln for ln in lines if "ERROR" in ln or "Exception" in ln]
        if config_errors:
            return config_errors[0][:300]
        return (errors or lines or ["empty log"])[-1][:300]

    def down(self, timeout: float = 60.0) -> bool:
        """Stop the server; True when one was running."""
        if self._pid() is None:
            return False
        self._launcher("stop")
        deadline = time.monotonic() + timeout
        while self._pid() is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        if self._pid() is not None:
            self._launcher("kill")
        return True

    def peak_memory_kib(self) -> int | None:
        """The server process's peak resident memory (VmHWM), for reports."""
        return peak_resident_kib(self._pid())


def peak_resident_kib(pid: int | None) -> int | None:
    """A running process's peak resident memory (VmHWM) in KiB; None when it does not run."""
    status = Path(f"/proc/{pid}/status")
    if pid is None or not status.exists():
        return None
    line = next((ln for ln in status.read_text().splitlines() if ln.startswith("VmHWM:")), None)
    return int(line.split()[1]) if line else None


def metastore_properties(settings: Settings, local_dir: Path | None = None) -> str:
    """The catalog's metastore: the shared Hive metastore (metastore_uri), or a file metastore of
    Trino's own, in `local_dir` for a local lake and beside the lake in its bucket otherwise."""
    if settings.metastore_uri:
        return f"hive.metastore=thrift\nhive.metastore.uri={settings.metastore_uri}"
    if settings.is_local_lake:
        if local_dir is None:
            raise TrinoServerError("a local lake's file metastore needs a local folder")
        return f"hive.metastore=file\nhive.metastore.catalog.dir=local://{local_dir}"
    catalog_dir = settings.trino_uri(settings.lake_root.rstrip("/") + "/_trino_metastore")
    return f"hive.metastore=file\nhive.metastore.catalog.dir={catalog_dir}"


def catalog_properties(settings: Settings) -> str:
    """The Delta catalog file of a Trino cluster (deploy/): its metastore must be the shared one."""
    return (TEMPLATES / "catalog" / "delta.properties.tmpl").read_text().format(
        metastore=metastore_properties(settings), filesystem=filesystem_properties(settings))


def filesystem_properties(settings: Settings) -> str:
    """The catalog's file system: the local disk, or Trino's native S3 client on the profile's store.
    The keys are never written to the file: Trino reads them from its environment."""
    if settings.is_local_lake:
        return "fs.native-local.enabled=true\nlocal.location=/"
    lines = ["fs.native-s3.enabled=true", f"s3.region={settings.s3_region}"]
    if settings.s3_endpoint:
        lines += [f"s3.endpoint={settings.s3_endpoint}", "s3.path-style-access=true",
                  "s3.aws-access-key=${ENV:AWS_ACCESS_KEY_ID}", "s3.aws-secret-key=${ENV:AWS_SECRET_ACCESS_KEY}"]
    return "\n".join(lines)


def refresh_access_rules(settings: Settings) -> bool:
    """Regenerate the embedded server's access rules (jobs call this after registering tables, so a
    PII flag added to a contract protects the column within seconds). A cluster gets its rules from
    `scenelake access rules --out FILE`, deployed with its configuration. Returns whether it wrote."""
    etc = TrinoServer(settings).etc_dir
    if not settings.trino_local or not (etc / "access-control.properties").exists():
        return False
    access.write(settings, etc)
    return True
