"""The local cluster (`SCENELAKE_ENV=cluster-local`, `scenelake cluster up|down|status`): the cluster
profile in miniature on this machine's loopback, every part a real server in its own process.

- An S3-compatible object store: SeaweedFS (`weed mini`, built from its Go module by `make
  setup-cluster`), with the buckets of the profile's landing zone and lake and one identity whose
  keys are made at the first start (state_dir/cluster/credentials.json, mode 0600), or taken from
  AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY when those are set.
- A Spark standalone master and two workers (one core each), as separate JVMs from the pinned
  pyspark. Jobs connect to the master the profile names (`spark_master`); the workers' executors
  reach the store with the same credentials, given to them in their environment.

- A Hive metastore (the standalone metastore server from Maven Central, `make setup-cluster`) on an
  embedded Derby database under state_dir/cluster, shared by Spark and Trino: the jobs register each
  table they write in it, and Trino reads them from it. It reaches the store through S3A (to make
  the folders of the schemas and tables Trino creates) with the same keys.
- A Trino server (scenelake.trino_server, as `scenelake trino up` starts it) reading the same lake
  through its native S3 file system and the shared metastore, with the same generated access rules.

Every process writes its log under state_dir/cluster/log (Trino: state_dir/trino/log); `down` stops
them in the reverse order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from scenelake.objectstore import CREDENTIAL_VARIABLES, credentials_file, split
from scenelake.settings import Settings

WORKERS = 2
WORKER_MEMORY = "2g"


class ClusterError(Exception):
    """A part of the local cluster could not be started or reached; the message says which and what to do."""


@dataclass(frozen=True)
class PartStatus:
    name: str
    running: bool
    pid: int | None
    detail: str


def _host_port(url: str, what: str) -> tuple[str, int]:
    match = re.match(r"^[a-z0-9]+://([^:/]+):(\d+)", url)
    if not match:
        raise ClusterError(f"{what} {url!r} has no host:port")
    return match.group(1), int(match.group(2))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _exits(pid: int, within: float) -> bool:
    """Whether the process ends within `within` seconds (reaped when it is our child)."""
    deadline = time.monotonic() + within
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.3)


def _exited(pid: int) -> bool:
    """A process that has exited but not been reaped (a part this process started and that died):
    reaped here, so that it is seen as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state != "Z":
        return False
    with contextlib.suppress(ChildProcessError):  # not our child: its own parent reaps it
        os.waitpid(pid, os.WNOHANG)
    return True


def _json(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except (urllib.error.URLError, OSError, ValueError):
        return None


class LocalCluster:
    def __init__(self, settings: Settings):
        if not settings.s3_endpoint or not settings.spark_master.startswith("spark://"):
            raise ClusterError(f"the profile {settings.env!r} is not a local cluster: select it with "
                               "SCENELAKE_ENV=cluster-local (it sets spark_master = spark://... and s3_endpoint)")
        self.settings = settings
        self.root = settings.state_dir / "cluster"
        self.master_host, self.master_port = _host_port(settings.spark_master, "spark_master")
        self.s3_host, self.s3_port = _host_port(settings.s3_endpoint, "s3_endpoint")
        self.metastore_port = _host_port(settings.metastore_uri, "metastore_uri")[1] if settings.metastore_uri else None
        if "127.0.0.1" not in (self.master_host, self.s3_host) and "localhost" not in (self.master_host, self.s3_host):
            raise ClusterError("the local cluster runs on loopback only: spark_master and s3_endpoint must name "
                               "127.0.0.1 or localhost")

    # --- where things are ------------------------------------------------------------
    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    def _pid_file(self, part: str) -> Path:
        return self.root / f"{part}.pid"

    def ports(self) -> dict[str, int]:
        """The ports besides the two the profile names, chosen free at the first start and kept."""
        path = self.root / "ports.json"
        if path.exists():
            return {k: int(v) for k, v in json.loads(path.read_text()).items()}
        names = ["master_ui", *(f"worker{i}_ui" for i in range(1, WORKERS + 1)),
                 "weed_master", "weed_volume", "weed_filer"]
        chosen = {n: _free_port() for n in names}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(chosen, indent=1))
        return chosen

    @property
    def master_ui(self) -> str:
        return f"http://127.0.0.1:{self.ports()['master_ui']}"

    def buckets(self) -> list[str]:
        return sorted({split(r)[0] for r in (self.settings.lake_root, self.settings.landing_root)
                       if r.startswith("s3a://")})

    def credentials(self) -> dict[str, str]:
        """The store's keys: from the environment when set, else made once and kept (mode 0600)."""
        if all(os.environ.get(v) for v in CREDENTIAL_VARIABLES):
            return {v: os.environ[v] for v in CREDENTIAL_VARIABLES}
        path = credentials_file(self.settings)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            keys = {"AWS_ACCESS_KEY_ID": "scenelake" + secrets.token_hex(6),
                    "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30)}
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(keys, handle)
        return dict(json.loads(path.read_text()))

    # --- the parts -------------------------------------------------------------------
    def weed(self) -> Path:
        binary = self.settings.cache_dir / "bin" / "weed"
        if not binary.exists():
            raise ClusterError(f"SeaweedFS is not installed at {binary}: run `make setup-cluster`")
        return binary

    def spark_home(self) -> Path:
        import pyspark

        return Path(pyspark.__file__).parent

    def _env(self) -> dict[str, str]:
        from scenelake.spark import spark_java_home

        env = {**os.environ, **self.credentials(), "SPARK_HOME": str(self.spark_home()), "SPARK_LOCAL_IP": "127.0.0.1"}
        java_home = spark_java_home()
        if java_home:
            env["JAVA_HOME"] = java_home
        return env

    def _store_command(self) -> list[str]:
        keys = self.credentials()
        config = self.root / "s3-identities.json"
        pair = {"accessKey": keys["AWS_ACCESS_KEY_ID"], "secretKey": keys["AWS_SECRET_ACCESS_KEY"]}
        identity = {"name": "scenelake", "credentials": [pair],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"identities": [identity]}, handle)
        data = self.root / "store"
        data.mkdir(parents=True, exist_ok=True)
        ports = self.ports()
        return [str(self.weed()), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.port={self.s3_port}", f"-s3.config={config}", "-s3.port.iceberg=0",
                f"-master.port={ports['weed_master']}", f"-volume.port={ports['weed_volume']}",
                f"-filer.port={ports['weed_filer']}", "-webdav=false", "-admin.ui=false",
                "-master.telemetry=false", f"-bucket={','.join(self.buckets())}"]

    def _metastore_command(self) -> list[str]:
        from scenelake.spark import spark_java_home

        jars = self.settings.cache_dir / "metastore-jars"
        if not any(jars.glob("hive-standalone-metastore-*.jar")):
            raise ClusterError(f"the Hive metastore is not installed in {jars}: run `make setup-cluster`")
        conf = self.root / "metastore-conf"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "metastore-site.xml").write_text(metastore_site(self.settings, derby(self.root / "metastore_db")))
        hadoop = sorted((self.spark_home() / "jars").glob("hadoop-client-*.jar"))
        classpath = [str(conf), f"{jars}/*", *map(str, hadoop), str(self.settings.cache_dir / "s3-jars" / "*")]
        java_home = spark_java_home()
        java = str(Path(java_home) / "bin" / "java") if java_home else "java"
        return [java, "-Xmx512m", f"-Dderby.system.home={self.root}", "-cp", ":".join(classpath),
                "org.apache.hadoop.hive.metastore.HiveMetaStore"]

    def _master_command(self) -> list[str]:
        return [str(self.spark_home() / "bin" / "spark-class"), "org.apache.spark.deploy.master.Master",
                "--host", self.master_host, "--port", str(self.master_port),
                "--webui-port", str(self.ports()["master_ui"])]

    def _worker_command(self, n: int) -> list[str]:
        work = self.root / f"worker{n}"
        work.mkdir(parents=True, exist_ok=True)
        return [str(self.spark_home() / "bin" / "spark-class"), "org.apache.spark.deploy.worker.Worker",
                self.settings.spark_master, "--host", "127.0.0.1", "--cores", "1", "--memory", WORKER_MEMORY,
                "--webui-port", str(self.ports()[f"worker{n}_ui"]), "--work-dir", str(work)]

    def parts(self) -> list[str]:
        shared = ["metastore"] if self.metastore_port else []
        return ["store", *shared, "master", *(f"worker{i}" for i in range(1, WORKERS + 1))]

    def _command(self, part: str) -> list[str]:
        if part == "store":
            return self._store_command()
        if part == "metastore":
            return self._metastore_command()
        if part == "master":
            return self._master_command()
        return self._worker_command(int(part.removeprefix("worker")))

    def _pid(self, part: str) -> int | None:
        try:
            pid = int(self._pid_file(part).read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return None if _exited(pid) else pid

    def start(self, part: str) -> int:
        """Start one part (no-op when it runs); returns its pid."""
        running = self._pid(part)
        if running is not None:
            return running
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{part}.log").open("ab")
        process = subprocess.Popen(self._command(part), stdout=log, stderr=subprocess.STDOUT, env=self._env(),
                                   cwd=self.root, start_new_session=True)
        self._pid_file(part).write_text(str(process.pid))
        return process.pid

    def stop(self, part: str, timeout: float = 30.0) -> bool:
        """Stop one part (its whole process group); True when it was running."""
        pid = self._pid(part)
        if pid is None:
            return False
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pid, sig)
            except OSError:
                break  # the group is gone already
            if _exits(pid, wait):
                break
        self._pid_file(part).unlink(missing_ok=True)
        return True

    # --- the whole cluster -----------------------------------------------------------
    def up(self, timeout: float = 300.0, progress=print, trino: bool = True) -> list[PartStatus]:  # type: ignore[no-untyped-def]
        """Start every part that does not run yet, the store first, Trino last (`trino=False`: not Trino)."""
        named = {"store": (self.s3_port, "S3_ENDPOINT"), "master": (self.master_port, "SPARK_MASTER"),
                 "metastore": (self.metastore_port, "METASTORE_URI")}
        for part, (port, key) in named.items():
            if port and self._pid(part) is None and _listening(port):
                raise ClusterError(f"port {port} ({part}) is in use by another process: stop it, or set "
                                   f"SCENELAKE_{key} to a free port")
        deadline = time.monotonic() + timeout
        self.start("store")
        self._wait(deadline, "store", self._store_ready)
        progress(f"[cluster] object store ready at {self.settings.s3_endpoint} (buckets {', '.join(self.buckets())})")
        if self.metastore_port:
            self.start("metastore")
            self._wait(deadline, "metastore", lambda: _listening(self.metastore_port))  # type: ignore[arg-type]
            progress(f"[cluster] Hive metastore at {self.settings.metastore_uri}")
        self.start("master")
        self._wait(deadline, "master", lambda: _json(f"{self.master_ui}/json/") is not None)
        for i in range(1, WORKERS + 1):
            self.start(f"worker{i}")
        self._wait(deadline, "workers", lambda: len(self.alive_workers()) >= WORKERS)
        progress(f"[cluster] Spark master {self.settings.spark_master} with {WORKERS} workers (UI {self.master_ui})")
        if trino:
            ready = self.trino().up(timeout=max(deadline - time.monotonic(), 60.0))
            progress(f"[cluster] {ready.detail}")
        return self.status()

    def trino(self):  # type: ignore[no-untyped-def]
        """The profile's Trino server, on the store through its native S3 file system."""
        from scenelake.trino_server import TrinoServer

        return TrinoServer(self.settings)

    def _store_ready(self) -> bool:
        from pyarrow import fs

        from scenelake.objectstore import filesystem

        if not _listening(self.s3_port):
            return False
        try:
            infos = filesystem(self.settings).get_file_info(self.buckets())
        except OSError:
            return False
        return all(i.type == fs.FileType.Directory for i in infos)

    def _wait(self, deadline: float, what: str, ready) -> None:  # type: ignore[no-untyped-def]
        while time.monotonic() < deadline:
            dead = [p for p in self.parts() if self._pid_file(p).exists() and self._pid(p) is None]
            if dead:
                raise ClusterError(f"{dead[0]} exited while starting: read {self.log_dir / (dead[0] + '.log')} "
                                   f"(last line: {self._last_line(dead[0])})")
            if ready():
                return
            time.sleep(1)
        raise ClusterError(f"{what} not ready in time: read the logs in {self.log_dir}")

    def _last_line(self, part: str) -> str:
        try:
            lines = [ln for ln in (self.log_dir / f"{part}.log").read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "no log"
        return (lines or ["empty log"])[-1][:300]

    def master_state(self) -> dict[str, object] | None:
        """The master's JSON status: workers, active and completed applications."""
        return _json(f"{self.master_ui}/json/")

    def alive_workers(self) -> list[dict[str, object]]:
        workers = (self.master_state() or {}).get("workers")
        if not isinstance(workers, list):
            return []
        return [w for w in workers if isinstance(w, dict) and w.get("state") == "ALIVE"]

    def peak_memory_mib(self) -> dict[str, int]:
        """Each running part's peak resident memory (VmHWM of its process, its executors not included)."""
        from scenelake.trino_server import peak_resident_kib

        peaks = {part: peak_resident_kib(self._pid(part)) for part in self.parts()}
        return {part: kib // 1024 for part, kib in peaks.items() if kib is not None}

    def down(self) -> list[str]:
        """Stop every part, Trino and the workers first; returns those that were running."""
        stopped = ["trino"] if self.trino().down() else []
        return stopped + [p for p in reversed(self.parts()) if self.stop(p)]

    def status(self) -> list[PartStatus]:
        found = []
        workers = {str(w.get("webuiaddress", "")) for w in self.alive_workers()}
        for part in self.parts():
            pid = self._pid(part)
            if pid is None:
                found.append(PartStatus(part, False, None, f"{part}: not running"))
                continue
            if part == "store":
                detail = f"object store at {self.settings.s3_endpoint}"
            elif part == "metastore":
                detail = f"Hive metastore at {self.settings.metastore_uri}"
            elif part == "master":
                detail = f"Spark master at {self.settings.spark_master}, UI {self.master_ui}"
            else:
                ui = f"http://127.0.0.1:{self.ports()[part + '_ui']}"
                detail = f"Spark {part} {'registered' if ui in workers else 'not registered'} (UI {ui})"
            found.append(PartStatus(part, True, pid, f"{part}: running (pid {pid}), {detail}"))
        trino = self.trino().status()
        found.append(PartStatus("trino", trino.ready, trino.pid, f"trino: {trino.detail}"))
        return found


def derby(folder: Path) -> dict[str, str]:
    """The local cluster's metastore database: embedded Derby in a folder."""
    return {"javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={folder};create=true",
            "javax.jdo.option.ConnectionDriverName": "org.apache.derby.jdbc.EmbeddedDriver"}


def metastore_site(settings: Settings, database: dict[str, str]) -> str:
    """The metastore's configuration: thrift port, its database (`javax.jdo.option.*`), and S3A on the
    profile's store (keys from the environment: S3A's default chain reads AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY, or an instance role)."""
    from xml.sax.saxutils import escape

    bucket = split(settings.lake_root)[0]
    values = {
        "metastore.thrift.port": str(_host_port(settings.metastore_uri, "metastore_uri")[1]),
        # Schemas created without a location (Trino's ops, the curated views') get a folder here.
        "metastore.warehouse.dir": f"s3a://{bucket}/_warehouse",
        **database,
        # The standalone jar has no schema scripts (the binary tarball does, Maven Central does not
        # serve it): DataNucleus creates the schema on the first start.
        "datanucleus.schema.autoCreateAll": "true",
        "metastore.schema.verification": "false",
        # The standalone server's own classes (the defaults name classes of Hive's full server).
        "metastore.expression.proxy": "org.apache.hadoop.hive.metastore.DefaultPartitionExpressionProxy",
        "metastore.task.threads.always": "org.apache.hadoop.hive.metastore.events.EventCleanerTask,"
                                         "org.apache.hadoop.hive.metastore.RuntimeStatsCleanerTask",
        "metastore.event.db.notification.api.auth": "false",
        # Spark names the lake s3a://, Trino s3://: both are S3A here.
        "fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "fs.s3a.endpoint.region": settings.s3_region,
    }
    if settings.s3_endpoint:  # a store of our own; empty: AWS itself
        values.update({"fs.s3a.endpoint": settings.s3_endpoint, "fs.s3a.path.style.access": "true",
                       "fs.s3a.connection.ssl.enabled": str(settings.s3_endpoint.startswith("https:")).lower()})
    values.update({k.removeprefix("spark.hadoop."): v for k, v in settings.spark_conf.items()
                   if k.startswith("spark.hadoop.fs.s3a.")})
    rows = "".join(f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>\n"
                   for k, v in values.items())
    return f"<configuration>\n{rows}</configuration>\n"
