"""The throwaway PostgreSQL leaves the host as it found it."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import psycopg
import pytest

from racepub.commands import localdb


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="only root must hand the server to another user")
def test_binaries_in_a_private_folder_are_used_without_opening_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root the server runs as an unprivileged user. Binaries under a
    private folder (a virtualenv in /root) are copied to a temp folder of
    their own; the private folder, and every folder above it, keep their modes."""
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    install = private / "pginstall"
    shutil.copytree(localdb.find_bindir().parent, install, symlinks=True)
    monkeypatch.setattr(localdb, "find_bindir", lambda: install / "bin")
    watched = [private, *private.parents]
    before = {p: stat.S_IMODE(p.stat().st_mode) for p in watched}
    db = localdb.LocalPostgres()
    try:
        with psycopg.connect(db.start()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert not db.bindir.is_relative_to(private)
    finally:
        db.destroy()
    assert {p: stat.S_IMODE(p.stat().st_mode) for p in watched} == before
    assert not db.root.exists()
