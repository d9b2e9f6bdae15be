"""The config_apply journal: what a start finds after an apply the last run did not finish."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_agent import config_apply


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text("old: 1\n")
    path.chmod(0o640)
    return path


def test_without_a_journal_nothing_is_recovered(site: Path) -> None:
    assert config_apply.recover(site) is None
    assert site.read_text() == "old: 1\n"


def test_an_unfinished_apply_is_undone_once(site: Path) -> None:
    config_apply.begin(site, "cmd-7", "old: 1\n", "sha256:new")
    config_apply.write_atomically(site, "new: 2\n")
    assert config_apply.recover(site) == config_apply.InterruptedApply("cmd-7", "sha256:new")
    assert site.read_text() == "old: 1\n"
    assert os.stat(site).st_mode & 0o777 == 0o640  # the file keeps its mode
    assert not config_apply.journal_path(site).exists()
    assert config_apply.recover(site) is None


def test_a_confirmed_apply_leaves_nothing_to_recover(site: Path) -> None:
    config_apply.begin(site, "cmd-8", "old: 1\n", "sha256:new")
    config_apply.write_atomically(site, "new: 2\n")
    config_apply.end(site)
    assert config_apply.recover(site) is None
    assert site.read_text() == "new: 2\n"


def test_an_unreadable_journal_is_set_aside_and_the_file_kept(site: Path) -> None:
    config_apply.journal_path(site).write_text("{not json")
    assert config_apply.recover(site) is None
    assert site.read_text() == "old: 1\n"
    aside = site.with_name(".site.yaml.applying.unreadable")
    assert aside.read_text() == "{not json"


def test_one_agent_per_config_file(site: Path) -> None:
    first = config_apply.lock(site)
    assert first is not None
    try:
        # flock is per open file description: a second open in this process conflicts too.
        with pytest.raises(config_apply.ConfigInUse, match="another agent is running on"):
            config_apply.lock(site)
    finally:
        os.close(first)
    again = config_apply.lock(site)
    assert again is not None
    os.close(again)


def test_a_missing_directory_gives_no_lock(tmp_path: Path) -> None:
    assert config_apply.lock(tmp_path / "missing" / "site.yaml") is None


def test_a_journal_that_is_not_a_file_does_not_stop_the_start(site: Path) -> None:
    config_apply.journal_path(site).mkdir()
    assert config_apply.recover(site) is None
    assert site.read_text() == "old: 1\n"
