"""Cluster health: the part decisions (pure) and the local DB check on a real SQLite file."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.trial.unittest import TestCase

from guildnet.cluster import health as H
from guildnet.cluster.localdb import LocalDB

reactor: Any = _reactor
T = 1_800_000_000.0


def test_kubernetes_part_names_the_version_or_the_error() -> None:
    up = H.kubernetes_part(True, "v1.36.3", None, "https://k", T)
    assert up["ok"] and up["version"] == "v1.36.3" and up["checkedAt"] == "2027-01-15T08:00:00Z"
    down = H.kubernetes_part(False, None, "cannot reach the API server: refused", "https://k", T)
    assert not down["ok"] and "refused" in down["reason"] and down["server"] == "https://k"


def test_informers_part_names_the_unsynced_kinds() -> None:
    assert not H.informers_part({}, T)["ok"]
    waiting = H.informers_part({"Workspace": True, "Pod": False, "Event": False}, T)
    assert not waiting["ok"] and waiting["reason"] == "not synced: Event, Pod"
    assert H.informers_part({"Workspace": True}, T)["ok"]


def test_operator_part() -> None:
    assert H.operator_part(False, False, False, T)["ok"]
    assert not H.operator_part(True, False, False, T)["ok"]
    assert H.operator_part(True, True, True, T)["leader"] is True
    standby = H.operator_part(True, True, False, T)
    assert standby["ok"] and "standby" in standby["reason"]


def test_summary_lists_the_failing_parts() -> None:
    parts = {
        "kubernetes": H.kubernetes_part(True, "v1", None, "", T),
        "localdb": H.localdb_part("quick_check: corrupt", T),
    }
    s = H.summary("lab", parts, T)
    assert s["ok"] is False and s["failing"] == ["localdb"] and s["cluster"] == "lab"
    assert H.summary("lab", {"kubernetes": parts["kubernetes"]}, T)["ok"] is True


class LocalDBCheckTests(TestCase):
    async def test_check_passes_then_reports_a_closed_database(self) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="guildnet-health-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        db = LocalDB(tmp / "local.sqlite3", reactor, name="test-health-db")
        await db.open()
        self.assertIsNone(await db.check())
        self.assertIsNone(await db.check())  # the probe row is overwritten, not added
        rows = sqlite3.connect(tmp / "local.sqlite3").execute(
            "SELECT count(*) FROM kv WHERE key = 'guildnet.health'"
        )
        self.assertEqual(rows.fetchone()[0], 1)
        await db.close()
        db2 = LocalDB(tmp / "local.sqlite3", reactor, name="test-health-db2")
        db2._pool.start()
        self.addCleanup(db2.close)
        with self.assertRaises(RuntimeError):
            await db2.check()  # never opened: the route reports this as the reason
