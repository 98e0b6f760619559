"""Vehicle tags: the operator's form, what a registry entry may carry, the spec's tag filter,
and the choice of vehicles it makes (oodida_core.protocol.tags, oodida_core.spec.tags)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from oodida_cloud.deploy import Deployer
from oodida_cloud.planning import select_clients
from oodida_core.protocol.errors import MessageError, SpecError
from oodida_core.protocol.tags import (
    MAX_TAGS,
    TagFilter,
    format_tags,
    parse_item,
    split_items,
    tags_for_clients,
)
from oodida_core.protocol.wire import ClientInfo, DeployRequest, decode
from oodida_core.spec import schema
from oodida_core.spec.model import LISTING_1_1, DeploySpec, spec_to_wire, validate_spec
from oodida_core.spec.tags import filter_of, live_tags, select_tagged


def info(cid: int, **tags: str) -> ClientInfo:
    return ClientInfo(
        client_id=cid, signals=("speed",), tags=tags, worker="w", hostname="h", pid=1, started_at=0.0
    )


FLEET = [
    info(1, powertrain="ev", region="eu"),
    info(2, powertrain="ev", region="us"),
    info(3, powertrain="ev", region="eu"),
    info(4, powertrain="diesel", region="eu"),
    info(5, powertrain="hybrid", region="cn"),
    info(6),
]


# ---------------------------------------------------------------- the operator's form


def test_tags_apply_in_order_and_an_id_prefix_limits_a_tag_to_those_clients() -> None:
    items = ["region=eu", "1-3:powertrain=ev", "4-6:powertrain=diesel", "5:region=us"]
    tags = tags_for_clients(items, [1, 2, 3, 4, 5, 6])
    assert tags[1] == {"region": "eu", "powertrain": "ev"}
    assert tags[5] == {"region": "us", "powertrain": "diesel"}
    assert tags[6] == {"region": "eu", "powertrain": "diesel"}


def test_the_environment_form_splits_on_commas_and_blanks() -> None:
    assert split_items(" powertrain=ev,region=eu  1-2:model=xc40 ") == [
        "powertrain=ev",
        "region=eu",
        "1-2:model=xc40",
    ]
    assert parse_item("7:fw=v1.2:rc3") == ((7, 7), "fw", "v1.2:rc3")  # a colon in a value stays


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("powertrain", "must be [IDS:]key=value"),
        ("powertrain=", "the value '' of tag 'powertrain'"),
        ("=ev", "tag key ''"),
        ("1x=ev", "tag key '1x'"),
        ("p\u043ewertrain=ev", "U+043E at position 2"),  # a Cyrillic o
        ("powertrain=e\u200bv", "U+200B at position 2"),  # an invisible space
        ("region=eu us", "the value 'eu us'"),
        ("powertrain=" + "e" * 129, "1 to 128 characters"),
        ("k" * 65 + "=v", "at most 64 characters"),
        ("5-2:a=b", "ranges go up"),
        ("0:a=b", "client ids are positive"),
    ],
)
def test_a_bad_tag_item_is_refused_saying_why(item: str, says: str) -> None:
    with pytest.raises(ValueError) as exc:
        tags_for_clients([item], [1, 2])
    assert says in str(exc.value)


def test_an_item_naming_no_served_client_is_refused_unless_a_child_process_got_it() -> None:
    with pytest.raises(ValueError, match="none of which are served here"):
        tags_for_clients(["50-60:region=eu"], [1, 2])
    assert tags_for_clients(["50-60:region=eu"], [1, 2], strict=False) == {1: {}, 2: {}}


def test_a_client_may_carry_at_most_32_tags() -> None:
    items = [f"k{i}=v" for i in range(MAX_TAGS + 1)]
    with pytest.raises(ValueError, match=f"33 tags; at most {MAX_TAGS}"):
        tags_for_clients(items, [1])


def test_tags_print_sorted_on_one_line() -> None:
    assert format_tags({"region": "eu", "powertrain": "ev"}) == "powertrain=ev,region=eu"
    assert format_tags({}) == "-"


# ---------------------------------------------------------------- what a registry entry carries


@pytest.mark.parametrize(
    "tags",
    [
        {"p\u043ewertrain": "ev"},
        {"powertrain": "e\u0435v"},
        {"powertrain": "x" * 129},
        {"k" * 65: "v"},
        {f"k{i}": "v" for i in range(MAX_TAGS + 1)},
        {"powertrain": 1},
        {"powertrain": math.nan},
        {"powertrain": ""},
        {"powertrain": "ev\n"},
    ],
)
def test_a_rogue_vehicles_odd_tags_make_its_entry_unreadable(tags: dict[str, Any]) -> None:
    entry = info(1).to_wire() | {"tags": tags}
    with pytest.raises(MessageError, match="malformed ClientInfo: tags"):
        decode(ClientInfo, entry)


def test_an_older_vehicles_entry_without_tags_reads_as_untagged() -> None:
    entry = info(1).to_wire()
    del entry["tags"]
    assert decode(ClientInfo, entry).tags == {}


# ---------------------------------------------------------------- the spec's filter


def test_a_tag_filter_in_a_spec_is_kept_in_canonical_form_and_round_trips() -> None:
    spec = validate_spec({**LISTING_1_1, "clients": {"tags": {"powertrain": "ev", "region": ["eu", "us"]}}})
    assert spec.clients == TagFilter(tags={"powertrain": ("ev",), "region": ("eu", "us")})
    assert validate_spec(spec_to_wire(spec)) == spec
    with_k = validate_spec({**LISTING_1_1, "clients": {"tags": {"powertrain": "ev"}, "k": 2.0}})
    assert with_k.clients == TagFilter(tags={"powertrain": ("ev",)}, k=2)
    assert validate_spec({**LISTING_1_1, "clients": {"tags": {"a": "b"}, "k": None}}).clients.k is None


def test_deploy_onboard_takes_a_tag_filter_and_deploy_offboard_does_not() -> None:
    spec = validate_spec(
        {"mode": "deploy_onboard", "filename": "m.py", "clients": {"tags": {"region": "eu"}}}
    )
    assert isinstance(spec, DeploySpec) and spec.clients == TagFilter(tags={"region": ("eu",)})
    with pytest.raises(SpecError, match="not allowed in deploy_offboard"):
        validate_spec({"mode": "deploy_offboard", "filename": "m.py", "clients": {"tags": {"region": "eu"}}})
    wire = DeployRequest(
        user="a", deploy_id="d", role="onboard", filename="m.py", source="", clients=spec.clients
    ).to_wire()
    assert decode(DeployRequest, wire).clients == spec.clients


@pytest.mark.parametrize(
    ("clients", "says"),
    [
        ({"tags": {}}, "'tags' must map 1 to 32 tag keys"),
        ({"tag": {"a": "b"}}, "unknown key 'tag' in a tag filter (its keys: tags, k); did you mean 'tags'?"),
        ({"k": 3, "tag": {}}, "a tag filter needs 'tags': it must be"),
        ({"tags": {"a": "b"}, "k": 0}, "'k' must be a positive integer"),
        ({"tags": {"a": "b"}, "k": True}, "'k' must be a positive integer"),
        ({"tags": {"a": "b"}, "k": "3"}, "'k' must be a positive integer"),
        ({"tags": {"a": ["b", "b"]}}, "must be distinct; repeated: b"),
        ({"tags": {"a": []}}, "needs a value or a list of 1 to 32 values"),
        ({"tags": {"a": math.nan}}, "needs a value or a list of 1 to 32 values"),
        ({"tags": {"a": ["b", 1]}}, "the value of tag 'a' must be a string"),
        ({"tags": {"p\u043ewertrain": "ev"}}, "U+043E at position 2"),
        ({"tags": {"powertrain": "x" * 500}}, "1 to 128 characters"),
        ({"tags": {f"k{i}": "v" for i in range(33)}}, "at most 32 keys"),
        ({"tags": "powertrain=ev"}, "'tags' must map"),
    ],
)
def test_a_bad_tag_filter_is_a_spec_error_naming_the_rule(clients: object, says: str) -> None:
    with pytest.raises(SpecError) as exc:
        validate_spec({**LISTING_1_1, "clients": clients})
    assert all(i.field == "clients" for i in exc.value.issues)
    assert any(says in i.rule for i in exc.value.issues), exc.value


def test_the_json_schema_agrees_with_the_check_on_tag_filters() -> None:
    defs = {"ClientId": schema._client_id(), "TagFilter": schema._tag_filter()}
    validator = Draft202012Validator({"$defs": defs, **schema._clients()})
    cases: list[object] = [
        {"tags": {"a": "b"}},
        {"tags": {"powertrain": ["ev", "hybrid"]}, "k": 3},
        {"tags": {"a": "b"}, "k": None},
        {"tags": {"a": "b"}, "k": 2.0},
        {"tags": {}},
        {"tags": {"1a": "b"}},
        {"tags": {"a": "b\n"}},
        {"tags": {"a\n": "b"}},
        {"tags": {"a": ["b", "b"]}},
        {"tags": {"a": "b"}, "k": 0},
        {"tags": {"a": "b"}, "x": 1},
        {"k": 1},
    ]
    for clients in cases:
        try:
            validate_spec({**LISTING_1_1, "clients": clients})
            accepted = True
        except SpecError:
            accepted = False
        assert validator.is_valid(clients) == accepted, clients


def test_the_librarys_filter_names_the_tags_field() -> None:
    assert filter_of({"region": ["eu", "us"]}).matches({"region": "us", "x": "y"})
    with pytest.raises(SpecError) as exc:
        filter_of({"region": "e u"})
    assert exc.value.issues[0].field == "tags"


# ---------------------------------------------------------------- choosing vehicles


def choose(clients: dict[str, Any], seed: str = "a1") -> list[int]:
    spec = validate_spec({**LISTING_1_1, "clients": clients})
    assert isinstance(spec.clients, TagFilter)
    return select_tagged(spec.clients, FLEET, seed)


def test_a_filter_chooses_exactly_the_live_vehicles_whose_tags_all_match() -> None:
    assert choose({"tags": {"powertrain": "ev"}}) == [1, 2, 3]
    assert choose({"tags": {"powertrain": "ev", "region": "eu"}}) == [1, 3]
    assert choose({"tags": {"powertrain": ["ev", "hybrid"]}}) == [1, 2, 3, 5]
    assert choose({"tags": {"region": ["cn", "us"], "powertrain": ["hybrid", "diesel"]}}) == [5]


def test_k_picks_k_of_the_matching_vehicles_reproducibly_from_the_id() -> None:
    picks = {
        tuple(choose({"tags": {"powertrain": ["ev", "hybrid"]}, "k": 2}, seed=f"s{i}")) for i in range(30)
    }
    assert all(len(p) == 2 and set(p) <= {1, 2, 3, 5} for p in picks)
    assert len(picks) > 1  # random among the matching ones
    once = choose({"tags": {"powertrain": "ev"}, "k": 2}, seed="same")
    assert choose({"tags": {"powertrain": "ev"}, "k": 2}, seed="same") == once
    assert choose({"tags": {"powertrain": "ev"}, "k": 50}) == [1, 2, 3]  # all, if fewer match


def test_a_filter_matching_no_live_vehicle_names_the_filter_and_the_live_tags() -> None:
    with pytest.raises(SpecError) as exc:
        choose({"tags": {"powertrain": "hydrogen", "region": ["eu", "us"]}})
    (issue,) = exc.value.issues
    assert issue.field == "clients"
    assert "no live client has the tags powertrain=hydrogen, region=eu|us" in issue.rule
    assert "powertrain: diesel (4), ev (1-3), hybrid (5); region: cn (5), eu (1,3-4), us (2)" in issue.rule


def test_the_live_tags_summary_says_when_no_vehicle_has_tags() -> None:
    assert live_tags([info(1), info(2)]) == "no live vehicle has tags"
    with pytest.raises(SpecError, match="no client is live"):
        select_tagged(TagFilter(tags={"a": ("b",)}), [], "x")


def test_the_cloud_selects_by_tags_for_assignments_and_deployments_alike() -> None:
    spec = validate_spec({**LISTING_1_1, "clients": {"tags": {"region": "eu"}, "k": 2}})
    assert isinstance(spec.clients, TagFilter)
    picked = select_clients(spec, FLEET, set(), "aid")
    assert picked == select_tagged(spec.clients, FLEET, "aid") and set(picked) <= {1, 3, 4}
    assert Deployer._tagged(spec.clients, FLEET, "aid") == picked
    assert Deployer._tagged(spec.clients, [info(9)], "aid") == []  # all left since the check
