"""Majority vote over the code versions the clients used."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oodida_cloud.voting import Vote, majority_vote, short_version

OLD = "sha256:" + "ab12" * 16
NEW = "sha256:" + "cd34" * 16


def test_no_clients_give_an_empty_vote() -> None:
    assert majority_vote({}) == Vote(None, (), {})


def test_everyone_agreeing_keeps_everyone() -> None:
    vote = majority_vote({3: "builtin", 1: "builtin", 2: "builtin"})
    assert vote == Vote("builtin", (1, 2, 3), {})


def test_the_largest_group_is_kept_and_the_rest_discarded_with_a_reason() -> None:
    vote = majority_vote({1: OLD, 2: NEW, 3: NEW, 4: OLD, 5: NEW})
    assert vote.version == NEW
    assert vote.kept == (2, 3, 5)
    assert list(vote.discarded) == [1, 4]
    assert vote.discarded[1] == (
        "minority code version sha256:ab12ab12ab12 (2 of 5 clients); kept sha256:cd34cd34cd34 (3 of 5)"
    )


def test_a_majority_beats_a_more_recent_deployment() -> None:
    vote = majority_vote({1: OLD, 2: OLD, 3: NEW}, {OLD: 1.0, NEW: 2.0})
    assert vote.version == OLD


def test_tie_goes_to_the_most_recently_deployed_version() -> None:
    versions = {1: OLD, 2: NEW, 3: OLD, 4: NEW}
    assert majority_vote(versions, {OLD: 100.0, NEW: 200.0}).version == NEW
    vote = majority_vote(versions, {OLD: 300.0, NEW: 200.0})
    assert vote.version == OLD
    assert vote.kept == (1, 3)
    assert "deployed more recently" in vote.discarded[2]


def test_a_version_without_deploy_time_counts_as_oldest() -> None:
    vote = majority_vote({1: "builtin", 2: OLD}, {OLD: 0.0})
    assert vote.version == OLD
    assert "minority" not in vote.discarded[1]
    assert "tied" in vote.discarded[1]


def test_an_unresolved_tie_goes_to_the_greatest_version_string() -> None:
    assert majority_vote({1: OLD, 2: NEW}).version == NEW
    assert majority_vote({1: NEW, 2: OLD}).version == NEW
    assert majority_vote({1: OLD, 2: NEW}, {OLD: 5.0, NEW: 5.0}).version == NEW
    assert majority_vote({1: "builtin", 2: OLD}).version == OLD


def test_the_vote_does_not_depend_on_insertion_order() -> None:
    versions = {5: NEW, 1: OLD, 3: "builtin", 2: OLD, 4: NEW}
    assert majority_vote(versions) == majority_vote(dict(sorted(versions.items())))


def test_sha256_versions_are_shortened_in_reasons() -> None:
    assert short_version(OLD) == "sha256:ab12ab12ab12"
    assert short_version("builtin") == "builtin"


def test_a_vote_is_immutable() -> None:
    vote = majority_vote({1: OLD})
    with pytest.raises(dataclasses.FrozenInstanceError):
        vote.version = NEW  # type: ignore[misc]


@given(
    st.dictionaries(
        st.integers(min_value=1, max_value=10_000),
        st.sampled_from(["builtin", OLD, NEW, "sha256:" + "ef" * 32]),
        max_size=40,
    ),
    st.dictionaries(st.sampled_from([OLD, NEW]), st.floats(0, 1e9), max_size=2),
)
def test_the_vote_keeps_a_largest_group_and_accounts_for_every_client(
    versions: dict[int, str], deployed_at: dict[str, float]
) -> None:
    vote = majority_vote(versions, deployed_at)
    kept, discarded = set(vote.kept), set(vote.discarded)
    assert kept | discarded == set(versions)
    assert not kept & discarded
    assert list(vote.kept) == sorted(vote.kept)
    if versions:
        assert all(versions[c] == vote.version for c in vote.kept)
        largest = max(list(versions.values()).count(v) for v in set(versions.values()))
        assert len(vote.kept) == largest
        assert all(vote.discarded[c] for c in vote.discarded)
