"""Bring a fresh machine to a runnable scenelake: venv, Delta jars, Trino server, JDK check.

Runs with the system python3 and its standard library only, because it is what creates the
virtual environment. Every step is idempotent: a stamp file records what was installed from
which pins, so a second run does no download. Every failure is one line that says what to do.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scenelake.settings import read_versions  # noqa: E402  (stdlib only, shared with the package)

CACHE = Path(os.environ.get("SCENELAKE_CACHE", ROOT / ".cache"))
VENV = Path(os.environ.get("SCENELAKE_VENV", ROOT / ".venv"))
STAMPS = CACHE / "stamps"
LOGS = CACHE / "logs"

# A project with one dependency, for `mvn dependency:copy-dependencies` to resolve it with its own.
ONE_DEPENDENCY_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>scenelake</groupId>
  <artifactId>{name}</artifactId>
  <version>1</version>
  <dependencies>
    <dependency>
      <groupId>{group}</groupId>
      <artifactId>{artifact}</artifactId>
      <version>{version}</version>{exclusions}
    </dependency>
  </dependencies>
</project>
"""


# delta-lake reads the lake; password-authenticators brings the file group provider (groups.txt,
# scenelake.access) and the password-file authenticator production uses.
KEPT_TRINO_PLUGINS = {"delta-lake", "password-authenticators"}


class ProvisionError(Exception):
    """A prerequisite is missing or a download failed; the message says what to do."""


def log(msg: str) -> None:
    print(f"[setup] {msg}", flush=True)


def stamp_ok(name: str, key: str) -> bool:
    stamp = STAMPS / name
    return stamp.exists() and stamp.read_text() == key


def write_stamp(name: str, key: str) -> None:
    STAMPS.mkdir(parents=True, exist_ok=True)
    (STAMPS / name).write_text(key)


def run_logged(cmd: list[str], logname: str, what: str, hint: str | Callable[[str], str]) -> str:
    """Run a command with its output in a log file; raise a one-line error on failure."""
    LOGS.mkdir(parents=True, exist_ok=True)
    logfile = LOGS / logname
    with logfile.open("w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
    text = logfile.read_text()
    if proc.returncode != 0:
        advice = hint(text) if callable(hint) else hint
        raise ProvisionError(f"{what} failed (exit {proc.returncode}): {advice} (log: {logfile})")
    return text


def require_tool(name: str, install_hint: str) -> str:
    found = shutil.which(name)
    if not found:
        raise ProvisionError(f"`{name}` not found on PATH: {install_hint}")
    return found


def java_major(java: Path) -> int:
    out = subprocess.run([str(java), "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if not match:
        raise ProvisionError(f"could not read the version of {java}: {out.strip()[:120]}")
    return int(match.group(1))


def check_python(pins: dict[str, str]) -> None:
    want = tuple(int(p) for p in pins["PYTHON_MIN"].split("."))
    if sys.version_info[:2] < want:
        raise ProvisionError(
            f"Python {pins['PYTHON_MIN']}+ needed, this is {sys.version.split()[0]}: "
            "install a newer python3 (apt-get install python3) and rerun `make setup`")


def trino_java_home(pins: dict[str, str]) -> Path:
    home = Path(os.environ.get("SCENELAKE_TRINO_JAVA_HOME") or pins["TRINO_JAVA_HOME"])
    java = home / "bin" / "java"
    minimum = int(pins["TRINO_JAVA_MIN"])
    if not java.exists():
        raise ProvisionError(
            f"JDK {minimum}+ for Trino not found at {home}: install a Temurin 25 JDK there, "
            "or set SCENELAKE_TRINO_JAVA_HOME to a JDK 25 folder")
    major = java_major(java)
    if major < minimum:
        raise ProvisionError(
            f"Trino {pins['TRINO_VERSION']} needs JDK {minimum}+, {home} is JDK {major}: "
            "set SCENELAKE_TRINO_JAVA_HOME to a JDK 25 folder")
    modules = subprocess.run([str(java), "--list-modules"], capture_output=True, text=True).stdout
    if "jdk.incubator.vector" not in modules:
        raise ProvisionError(f"{home} lacks the jdk.incubator.vector module Trino needs: use a full JDK 25")
    return home


def check_spark_java(pins: dict[str, str]) -> None:
    home = os.environ.get("SCENELAKE_SPARK_JAVA_HOME") or pins.get("SPARK_JAVA_HOME") or ""
    java = Path(home) / "bin" / "java" if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise ProvisionError("no `java` for Spark: apt-get install openjdk-17-jdk-headless, "
                             "or set SCENELAKE_SPARK_JAVA_HOME")
    major = java_major(Path(java))
    if major not in (17, 21):
        raise ProvisionError(f"Spark {pins['SPARK_VERSION']} runs on Java 17 or 21, `{java}` is {major}: "
                             "set SCENELAKE_SPARK_JAVA_HOME to a JDK 17 or 21")


def setup_venv() -> None:
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    python = VENV / "bin" / "python"
    if python.exists() and stamp_ok("venv", key):
        log(f"python environment up to date ({VENV})")
        return
    log(f"installing Python dependencies into {VENV} (a few minutes the first time)")
    if not python.exists():
        run_logged([sys.executable, "-m", "venv", str(VENV)], "venv.log", "creating the virtualenv",
                   "install the venv module (apt-get install python3-venv)")
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    run_logged(pip + ["install", "-q", "--upgrade", "pip"], "pip.log", "upgrading pip", pip_hint)
    run_logged(pip + ["install", "-q", "-e", f"{ROOT}[dev]"], "pip.log", "pip install", pip_hint)
    run_logged(pip + ["check"], "pip-check.log", "pip check", "conflicting pins in pyproject.toml")
    write_stamp("venv", key)


def pip_hint(text: str) -> str:
    if re.search(r"(Network is unreachable|Could not fetch|ConnectionError|Max retries)", text):
        return "cannot reach PyPI: check the network or the pip index settings (pip config list)"
    lines = [ln for ln in text.splitlines() if "ERROR" in ln]
    return lines[-1].strip()[:200] if lines else "see the log"


def maven_hint(text: str) -> str:
    if re.search(r"(Unknown host|UnknownHost|Connection refused|Network is unreachable|"
                 r"Could not transfer|offline mode|Connect to .* failed|timed out)", text):
        return "cannot reach Maven Central: check the network or ~/.m2/settings.xml (mirror/proxy)"
    if "Could not find artifact" in text or "Could not resolve" in text:
        missing = re.search(r"Could not (?:find|resolve) artifact ([^\s]+)", text)
        what = missing.group(1) if missing else "an artifact"
        return f"{what} is not served by Maven Central: change the pin in versions.env"
    return "see the log"


def maven_args() -> list[str]:
    """Extra Maven arguments, e.g. a local repository or -o; used by tests to simulate no network."""
    return os.environ.get("SCENELAKE_MVN_ARGS", "").split()


def setup_delta_jars(pins: dict[str, str]) -> None:
    spark_minor = ".".join(pins["SPARK_VERSION"].split(".")[:2])
    artifact = f"delta-spark_{spark_minor}_{pins['SCALA_BINARY']}"
    key = f"{artifact}:{pins['DELTA_VERSION']}:without-spark-jars"
    target = CACHE / "jars"
    if stamp_ok("delta-jars", key) and any(target.glob("*.jar")):
        log(f"Delta Lake jars up to date ({target})")
        return
    mvn = require_tool("mvn", "apt-get install maven")
    log(f"resolving io.delta:{artifact}:{pins['DELTA_VERSION']} and its dependencies with Maven into {target}")
    # Spark brings its own Scala and Spark jars; a second copy on the classpath breaks it.
    maven_copy(mvn, "delta-jars", "io.delta", artifact, pins["DELTA_VERSION"], target, "maven-delta.log",
               "resolving the Delta Lake jars", extra=["-DexcludeGroupIds=org.scala-lang,org.apache.spark"])
    dropped = drop_jars_spark_ships(target)
    log(f"kept {len(list(target.glob('*.jar')))} jars; dropped {dropped} that Spark already ships")
    write_stamp("delta-jars", key)


def maven_copy(mvn: str, name: str, group: str, artifact: str, version: str, target: Path, logname: str, what: str,
               exclusions: str = "", extra: list[str] | None = None) -> None:
    """One artifact and its runtime dependencies, resolved by Maven, copied into `target` (emptied first)."""
    pom = CACHE / f"{name}.pom.xml"
    CACHE.mkdir(parents=True, exist_ok=True)
    pom.write_text(ONE_DEPENDENCY_POM.format(name=name, group=group, artifact=artifact, version=version,
                                             exclusions=exclusions))
    shutil.rmtree(target, ignore_errors=True)
    run_logged([mvn, "-B", "-f", str(pom), *maven_args(), "dependency:copy-dependencies",
                f"-DoutputDirectory={target}", "-DincludeScope=runtime", *(extra or [])], logname, what, maven_hint)


def artifact_name(jar: Path) -> str:
    return re.sub(r"-\d[^-]*(-[^-]*)?\.jar$", "", jar.name)


def drop_jars_spark_ships(target: Path) -> int:
    """Remove resolved jars that pyspark already has in another version: a second copy of
    jackson, hadoop or parquet on the classpath is a class-loading accident waiting to happen."""
    spark_jars = list((VENV / "lib").glob("python3*/site-packages/pyspark/jars"))
    if not spark_jars:
        raise ProvisionError(f"pyspark is not installed in {VENV}: run `make setup` (all steps)")
    shipped = {artifact_name(j) for j in spark_jars[0].glob("*.jar")}
    dropped = 0
    for jar in target.glob("*.jar"):
        if artifact_name(jar) in shipped:
            jar.unlink()
            dropped += 1
    return dropped


def setup_trino(pins: dict[str, str]) -> None:
    version = pins["TRINO_VERSION"]
    home = CACHE / f"trino-server-{version}"
    key = f"trino-server:{version}:plugins={','.join(sorted(KEPT_TRINO_PLUGINS))}"
    if stamp_ok("trino", key) and (home / "bin" / "launcher").exists():
        log(f"Trino {version} up to date ({home})")
        return
    mvn = require_tool("mvn", "apt-get install maven")
    tar = require_tool("tar", "apt-get install tar")
    coord = f"io.trino:trino-server:{version}:tar.gz"
    log(f"fetching {coord} with Maven (about 820 MB, once)")
    started = time.monotonic()
    run_logged([mvn, "-B", *maven_args(), "dependency:get", f"-Dartifact={coord}", "-Dtransitive=false"],
               "maven-trino.log", f"downloading Trino {version}", maven_hint)
    repo = local_maven_repo()
    tarball = repo / "io" / "trino" / "trino-server" / version / f"trino-server-{version}.tar.gz"
    if not tarball.exists():
        raise ProvisionError(f"Maven reported success but {tarball} is missing: rerun `make setup`")
    log(f"downloaded in {time.monotonic() - started:.0f}s; unpacking the server and its plugins "
        f"({', '.join(sorted(KEPT_TRINO_PLUGINS))})")
    staging = CACHE / f".trino-server-{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    prefix = f"trino-server-{version}"
    # The plugins' jars are hard links between plugin folders, so unpack them all, then keep
    # only ours: the server loads every plugin folder at start and ~60 of them cost time.
    run_logged([tar, "-xzf", str(tarball), "-C", str(staging), "--strip-components=1",
                f"{prefix}/lib", f"{prefix}/bin", f"{prefix}/plugin", f"{prefix}/NOTICE"],
               "untar-trino.log", "unpacking Trino", "is the disk full? (df -h)")
    for plugin in (staging / "plugin").iterdir():
        if plugin.name not in KEPT_TRINO_PLUGINS:
            shutil.rmtree(plugin)
    shutil.rmtree(home, ignore_errors=True)
    staging.rename(home)
    write_stamp("trino", key)


def setup_trino_cli(pins: dict[str, str]) -> None:
    """Trino's command-line client: its executable jar from Maven Central, copied to
    .cache/trino-cli.jar (`scenelake sql` runs it; so can `java -jar`)."""
    version = pins["TRINO_VERSION"]
    target = CACHE / "trino-cli.jar"
    if stamp_ok("trino-cli", version) and target.exists():
        log(f"Trino CLI {version} up to date ({target})")
        return
    mvn = require_tool("mvn", "apt-get install maven")
    coord = f"io.trino:trino-cli:{version}:jar:executable"
    log(f"fetching {coord} with Maven")
    run_logged([mvn, "-B", *maven_args(), "dependency:get", f"-Dartifact={coord}", "-Dtransitive=false"],
               "maven-trino-cli.log", f"downloading the Trino CLI {version}", maven_hint)
    jar = local_maven_repo() / "io" / "trino" / "trino-cli" / version / f"trino-cli-{version}-executable.jar"
    if not jar.exists():
        raise ProvisionError(f"Maven reported success but {jar} is missing: rerun `make setup`")
    shutil.copyfile(jar, target)
    write_stamp("trino-cli", version)


def spark_hadoop_version() -> str:
    """The Hadoop version pyspark ships (its hadoop-client-api jar): hadoop-aws must be the same."""
    jars = sorted((VENV / "lib").glob("python3*/site-packages/pyspark/jars/hadoop-client-api-*.jar"))
    if not jars:
        raise ProvisionError(f"pyspark is not installed in {VENV}: run `make setup` first")
    return jars[0].name.removeprefix("hadoop-client-api-").removesuffix(".jar")


def setup_s3_jars(pins: dict[str, str]) -> None:
    """S3A for Spark (hadoop-aws and the AWS SDK bundle it names) into .cache/s3-jars, for the profiles
    whose lake is on object storage (scenelake.spark.s3_conf puts them on the class path)."""
    version = pins["HADOOP_AWS_VERSION"]
    shipped = spark_hadoop_version()
    if version != shipped:
        raise ProvisionError(f"HADOOP_AWS_VERSION={version} in versions.env, but pyspark ships Hadoop {shipped}: "
                             "S3A only works with its own Hadoop, set HADOOP_AWS_VERSION to that")
    target = CACHE / "s3-jars"
    if stamp_ok("s3-jars", version) and any(target.glob("hadoop-aws-*.jar")):
        log(f"S3A jars up to date ({target})")
        return
    mvn = require_tool("mvn", "apt-get install maven")
    log(f"resolving org.apache.hadoop:hadoop-aws:{version} and the AWS SDK bundle with Maven into {target} "
        "(about 650 MB, once)")
    maven_copy(mvn, "s3-jars", "org.apache.hadoop", "hadoop-aws", version, target, "maven-s3.log",
               "resolving the S3A jars")
    dropped = drop_jars_spark_ships(target)
    log(f"kept {len(list(target.glob('*.jar')))} S3A jars; dropped {dropped} that Spark already ships")
    write_stamp("s3-jars", version)


def setup_seaweedfs(pins: dict[str, str]) -> None:
    """The local cluster's object store: SeaweedFS's `weed`, built from its Go module (the module
    proxy serves its source; no binary release is fetched) into .cache/bin/weed."""
    module, version = pins["SEAWEEDFS_MODULE"], pins["SEAWEEDFS_VERSION"]
    target = CACHE / "bin" / "weed"
    if stamp_ok("seaweedfs", f"{module}@{version}") and target.exists():
        log(f"SeaweedFS up to date ({target})")
        return
    go = require_tool("go", "apt-get install golang (Go 1.26 or newer)")
    log(f"building {module}/weed@{version} with Go (a few minutes the first time)")
    found = run_logged([go, "mod", "download", "-json", f"{module}@{version}"], "go-seaweedfs.log",
                       "downloading the SeaweedFS module", "cannot reach the Go module proxy: check GOPROXY")
    source = Path(re.search(r'"Dir":\s*"([^"]+)"', found).group(1))  # type: ignore[union-attr]
    # Its go.mod has replace directives, which `go install module@version` refuses: build in a copy.
    staging = CACHE / ".seaweedfs-src"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    for path in [staging, *staging.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    target.parent.mkdir(parents=True, exist_ok=True)
    run_logged([go, "-C", str(staging), "build", "-trimpath", "-ldflags=-s -w", "-o", str(target), "./weed"],
               "go-seaweedfs.log", "building SeaweedFS", "see the log (a Go version older than the module's go.mod?)")
    shutil.rmtree(staging, ignore_errors=True)
    write_stamp("seaweedfs", f"{module}@{version}")


# jdk.tools is a Java 8 system-path jar that a newer JDK does not have.
METASTORE_EXCLUSIONS = """
      <exclusions>
        <exclusion><groupId>jdk.tools</groupId><artifactId>jdk.tools</artifactId></exclusion>
      </exclusions>"""
# The metastore runs on the Hadoop that pyspark ships (with S3A from .cache/s3-jars), not on the
# Hadoop 2 its POM names (whose other dependencies it still needs), and logs through log4j 2 only.
METASTORE_DROPPED = re.compile(r"^(hadoop-.*|slf4j-log4j12-.*|log4j-1\.2\.\d+)\.jar$")


def setup_metastore(pins: dict[str, str]) -> None:
    """The shared Hive metastore of the local cluster: the standalone metastore server and its
    dependencies (DataNucleus, embedded Derby, Thrift) into .cache/metastore-jars."""
    version = pins["HIVE_METASTORE_VERSION"]
    target = CACHE / "metastore-jars"
    if stamp_ok("metastore", version) and any(target.glob("hive-standalone-metastore-*.jar")):
        log(f"Hive metastore jars up to date ({target})")
        return
    mvn = require_tool("mvn", "apt-get install maven")
    log(f"resolving org.apache.hive:hive-standalone-metastore:{version} with Maven into {target} (about 50 MB)")
    maven_copy(mvn, "metastore", "org.apache.hive", "hive-standalone-metastore", version, target,
               "maven-metastore.log", "resolving the Hive metastore", exclusions=METASTORE_EXCLUSIONS)
    for jar in target.glob("*.jar"):
        if METASTORE_DROPPED.match(jar.name):
            jar.unlink()
    log(f"kept {len(list(target.glob('*.jar')))} metastore jars")
    write_stamp("metastore", version)


def setup_orchestrator() -> None:
    """The scheduler's own virtualenv (.venv-dagster) from orchestration/requirements.txt: Dagster pins
    its own grpcio and protobuf, so it is kept apart from the pipeline's."""
    requirements = ROOT / "orchestration" / "requirements.txt"
    key = hashlib.sha256(requirements.read_bytes()).hexdigest()
    venv = ROOT / ".venv-dagster"
    python = venv / "bin" / "python"
    if python.exists() and stamp_ok("orchestrator", key):
        log(f"scheduler environment up to date ({venv})")
        return
    log(f"installing Dagster into {venv} (about 30 s)")
    if not python.exists():
        run_logged([sys.executable, "-m", "venv", str(venv)], "venv-dagster.log",
                   "creating the scheduler's virtualenv", "install the venv module (apt-get install python3-venv)")
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    run_logged(pip + ["install", "-q", "-r", str(requirements)], "pip-dagster.log", "pip install (Dagster)", pip_hint)
    run_logged(pip + ["check"], "pip-check-dagster.log", "pip check (Dagster)",
               f"conflicting pins in {requirements}")
    write_stamp("orchestrator", key)


def local_maven_repo() -> Path:
    for arg in maven_args():
        if arg.startswith("-Dmaven.repo.local="):
            return Path(arg.split("=", 1)[1])
    return Path.home() / ".m2" / "repository"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["check", "venv", "jars", "trino", "trino-cli", "s3-jars", "seaweedfs",
                                            "metastore", "orchestrator"],
                        help="run one step (default: all but the cluster's)")
    parser.add_argument("--cluster", action="store_true",
                        help="the local cluster's parts (S3A jars, SeaweedFS, the Hive metastore, Dagster) "
                             "instead of the embedded ones")
    args = parser.parse_args(argv)
    pins = read_versions()
    steps = {
        "check": lambda: (check_python(pins), check_spark_java(pins), trino_java_home(pins)),
        "venv": setup_venv,
        "jars": lambda: setup_delta_jars(pins),
        "trino": lambda: setup_trino(pins),
        "trino-cli": lambda: setup_trino_cli(pins),
        "s3-jars": lambda: setup_s3_jars(pins),
        "seaweedfs": lambda: setup_seaweedfs(pins),
        "metastore": lambda: setup_metastore(pins),
        "orchestrator": setup_orchestrator,
    }
    cluster_steps = {"s3-jars", "seaweedfs", "metastore", "orchestrator"}
    try:
        for name, step in steps.items():
            if args.only == name or (args.only is None and (name in cluster_steps) == args.cluster):
                step()
    except ProvisionError as exc:
        print(f"scenelake setup: error: {exc}", file=sys.stderr)
        return 2
    log("ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
