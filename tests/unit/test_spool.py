"""The telemetry spool (SQLite): a sample kept once, read back in order, forgotten once counted."""

from __future__ import annotations

from pathlib import Path

from hero.store.spool import SampleSpool, SpooledSample, spool_path


def _sample(n: int) -> SpooledSample:
    return SpooledSample(f"s{n}", "ctr-1", 3600 * (n // 10), b"w1", f'{{"n":{n}}}'.encode())


def test_samples_are_kept_once_in_order_and_survive_a_reopen(tmp_path: Path) -> None:
    path = spool_path(tmp_path)
    spool = SampleSpool(path)
    spool.add([_sample(n) for n in range(5)], sent_at=100.0)
    spool.add([_sample(3), _sample(5)], sent_at=200.0)  # s3 again: kept as it was
    spool.close()

    spool = SampleSpool(path)
    try:
        rows = spool.pending()
        assert [(s.sample_id, sent) for _, sent, s in rows] == [
            ("s0", 100.0), ("s1", 100.0), ("s2", 100.0), ("s3", 100.0), ("s4", 100.0),
            ("s5", 200.0),
        ]  # fmt: skip
        assert rows[2][2] == _sample(2)
        first, rest = spool.pending(limit=2), spool.pending(after=rows[1][0])
        assert [s.sample_id for _, _, s in first + rest] == [f"s{n}" for n in range(6)]
        spool.sent_again(["s1"], sent_at=300.0)
        spool.remove(["s0", "s4", "nope"])
        assert spool.count() == 4
        assert [(s.sample_id, sent) for _, sent, s in spool.pending()] == [
            ("s1", 300.0), ("s2", 100.0), ("s3", 100.0), ("s5", 200.0),
        ]  # fmt: skip
    finally:
        spool.close()


def test_two_handles_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    publisher, worker = SampleSpool(spool_path(tmp_path)), SampleSpool(spool_path(tmp_path))
    try:
        publisher.add([_sample(1), _sample(2)], sent_at=1.0)
        worker.remove(["s1"])
        assert [s.sample_id for _, _, s in publisher.pending()] == ["s2"]
    finally:
        publisher.close()
        worker.close()
