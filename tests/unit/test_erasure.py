"""The pieces of a consent erasure on small inputs: identifiers, rows, landing files, table history, proof.

The whole scenario (a generated lake, evaluated, compared and maintained, then `forget`) is
tests/integration/test_erasure.py (make test-long).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from delta.tables import DeltaTable

from scenelake import access, consent, delta_io, erasure
from scenelake.contracts import all_contracts

pytestmark = pytest.mark.unit


def test_identifiers_match_whole_ids_only() -> None:
    rx = re.compile(erasure.pattern(["gen-0001", "subj-7"]))
    assert rx.search('{"capture_id": "gen-0001"}') and rx.search("capture_id=gen-0001/frame_index=3")
    assert not rx.search('"gen-00010"') and not rx.search("xgen-0001") and not rx.search("subj-77")
    assert not re.search(erasure.pattern([]), "anything")


def test_the_audit_table_is_for_admins_only() -> None:
    audit = all_contracts()["ops.erasures"]
    assert audit.readers == ("admin",)
    rules = access.rules("delta")
    for reader in ("analyst", "ml_engineer"):
        rule = next(r for r in rules["tables"] if r.get("group") == reader and r.get("schema") == "ops"
                    and r.get("table") == "erasures")
        assert rule["privileges"] == []
        assert access.column_access(access.ROLES[reader], audit, "subject_hash") == access.DENY
        assert access.metadata_access(access.ROLES[reader], audit) == access.DENY
    rows = {(g, t, c): (a, how) for g, t, c, a, how in access.matrix()}
    assert rows[("analyst", "ops.erasures", "*")] == ("denied", "readers: admin")
    assert rows[("admin", "ops.erasures", "*")] == ("allowed", "")
    assert rows[("analyst", "ops.quality_results", "*")] == ("allowed", "")  # the rest of ops as before


def test_landing_files_of_the_captures_go_and_other_files_lose_only_their_lines(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "upload-001.jsonl").write_text(
        '{"capture_id": "cap-1", "subjects": [{"subject_id": "subj-7"}]}\n{"capture_id": "cap-2"}\n')
    (manifests / "upload-002.jsonl").write_text('{"capture_id": "cap-1"}\n')
    folder = tmp_path / "predictions" / "run_id=r" / "capture_id=cap-1"
    folder.mkdir(parents=True)
    (folder / "detections.jsonl").write_text('{"frame_index": 1}\n')
    (tmp_path / "truth.json").write_text(json.dumps({"captures": [{"capture_id": "cap-1"}, {"capture_id": "cap-2"}],
                                                     "by_capture": {"cap-1": 3, "cap-2": 4}}))
    (tmp_path / "video.bin").write_bytes(b"\x00cap-1\x00")
    change = erasure.scrub_landing(tmp_path, ["cap-1"], erasure.pattern(["subj-7", "cap-1"]))
    assert sorted(change.removed) == ["manifests/upload-002.jsonl",
                                      "predictions/run_id=r/capture_id=cap-1/detections.jsonl"]
    assert sorted(change.rewritten) == ["manifests/upload-001.jsonl", "truth.json"] and change.uncut == ["video.bin"]
    # The kept line keeps its line number; bronze is told the new digest and size.
    assert (manifests / "upload-001.jsonl").read_text() == '\n{"capture_id": "cap-2"}\n'
    sha, size, _ = change.rewritten["manifests/upload-001.jsonl"]
    assert size == len('\n{"capture_id": "cap-2"}\n')
    assert json.loads((tmp_path / "truth.json").read_text()) == {"captures": [{"capture_id": "cap-2"}],
                                                                 "by_capture": {"cap-2": 4}}
    assert not (tmp_path / "predictions" / "run_id=r").exists()  # emptied folders go too
    hits = erasure.scan({"landing": tmp_path}, ["cap-1", "subj-7"])
    assert hits == [erasure.Hit("landing", "video.bin", "bytes")]


def test_the_scan_reads_names_bytes_and_compressed_parquet_values(tmp_path: Path) -> None:
    (tmp_path / "capture_id=cap-9").mkdir()
    values = [f"row {i} of cap-9" for i in range(5000)]
    pq.write_table(pa.table({"v": values}), tmp_path / "part-0.parquet", compression="zstd", use_dictionary=False)
    hits = erasure.scan({"lake": tmp_path}, ["cap-9"])
    assert [(h.file, h.how) for h in hits][:1] == [("capture_id=[erased]", "name")]
    # Found whether or not the compressed pages happen to show the text.
    assert [(h.file, h.how in ("bytes", "parquet")) for h in hits[1:]] == [("part-0.parquet", True)]


def test_rows_are_removed_or_scrubbed_and_the_history_before_the_purge_is_gone(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "t")
    spark.createDataFrame([("cap-1", ["capture_id=cap-1"]), ("cap-2", ["capture_id=cap-2", "capture_id=cap-1"])],
                          "capture_id string, keys array<string>").write.format("delta").option(
        "delta.enableChangeDataFeed", "true").save(path)
    spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", delta_io.marker_text({"job": "j", "n": 1}))
    try:
        spark.createDataFrame([("cap-3", None)], "capture_id string, keys array<string>").write.format(
            "delta").mode("append").save(path)
    finally:
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
    regex = erasure.pattern(["cap-1"])
    change = erasure.erase_rows(spark, path, "gold.t", ["cap-1"], regex)
    assert (change.removed, change.scrubbed) == (1, 1)
    assert sorted(map(tuple, spark.read.format("delta").load(path).collect())) == [
        ("cap-2", ["capture_id=cap-2", "capture_id=[erased]"]), ("cap-3", None)]
    table = DeltaTable.forPath(spark, path)
    commits = [(int(r[0]), str(r[1]), r[2]) for r in table.history().select("version", "operation", "userMetadata")
               .collect()]
    data_version = delta_io.data_version_of(commits)
    recorded: list[dict[str, object]] = []
    first = erasure.purge_history(spark, path, data_version, erasure.newest_markers(commits), recorded.append)
    assert recorded == [{"job": "j", "n": 1}]
    after = [(int(r[0]), str(r[1]), r[2]) for r in DeltaTable.forPath(spark, path).history()
             .select("version", "operation", "userMetadata").collect()]
    assert min(v for v, _, _ in after) >= first > data_version
    assert delta_io.data_version_of(sorted(after, reverse=True)) == data_version  # no reprocessing downstream
    with pytest.raises(Exception, match="DELTA_VERSION_NOT_FOUND|Cannot time travel"):
        spark.read.format("delta").option("versionAsOf", 0).load(path).count()
    assert erasure.scan({"t": Path(path)}, ["cap-1"]) == []
    assert not (Path(path) / "_change_data").exists()  # the deleted row's change-feed file went with it
    vacuumed = spark.sql(f"vacuum delta.`{path}` dry run").collect()
    assert vacuumed == []  # nothing left for the next maintenance to remove
    assert spark.read.format("delta").load(path).count() == 2


def test_a_redelivery_of_erased_files_reads_as_the_erasure_left_them(tmp_path: Path) -> None:
    """The ingestion guard (scenelake.consent.Erased) knows only keyed hashes, yet leaves out the same files
    and blanks the same lines as the erasure did, so a manifest landed again has the rewritten file's digest."""
    original = ('{"capture_id": "cap-1", "subjects": [{"subject_id": "subj-7"}, {"subject_id": "subj-8"}]}\r\n'
                '{"capture_id": "cap-2", "subjects": [{"subject_id": "subj-8"}]}\n{"capture_id": "cap-10"}')
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "upload-001.jsonl").write_text(original)
    erasure.scrub_landing(tmp_path, ["cap-1"], erasure.pattern(["subj-7", "cap-1"]))
    key = "ab" * 32
    guard = consent.Erased(key, frozenset(str(access.masked_value(i, key)) for i in ("subj-7", "cap-1")))
    assert guard.blanked(original) == (tmp_path / "manifests" / "upload-001.jsonl").read_text()
    assert guard.blanked(original) == '\n{"capture_id": "cap-2", "subjects": [{"subject_id": "subj-8"}]}\n' \
                                      '{"capture_id": "cap-10"}'
    assert guard.refuses("predictions/run_id=r/capture_id=cap-1/detections.jsonl")
    assert not guard.refuses("predictions/run_id=r/capture_id=cap-10/detections.jsonl")
    assert guard.refuses("manifests/cap-1.jsonl") and not guard.refuses("manifests/upload-001.jsonl")
    assert guard.blanked(None) is None
