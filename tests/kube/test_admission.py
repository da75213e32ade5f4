"""Admission of the emulated API over HTTP: each rule answers with kube-apiserver's own Status.

Expected texts are those of kube-apiserver 1.3x (apiextensions-apiserver, kube-openapi,
apimachinery's field errors; see tests.kube.admission and tests.kube.crd_validation).
"""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.helpers import EXAMPLES
from tests.kube.cluster import EmulatedCluster
from tests.kube.crd_validation import load_crds

NS = "research"
BACKTESTS = f"/apis/kubetrader.io/v1alpha1/namespaces/{NS}/backtests"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
CONFIGMAPS = f"/api/v1/namespaces/{NS}/configmaps"
IMMUTABLE = "spec is immutable: create a new Backtest"
CEL_SKIPPED = (
    "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedCluster]:
    with EmulatedCluster(load_crds().values(), workdir=tmp_path_factory.mktemp("kube"), namespaces=[NS]) as running:
        yield running


def http(
    cluster: EmulatedCluster, method: str, path: str, body: Any = None, content_type: str = "application/json"
) -> tuple[int, Any, list[str]]:
    """One request: (status, decoded body, Warning headers)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {cluster.admin_token}"}
    request = urllib.request.Request(cluster.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), response.headers.get_all("Warning") or []
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers.get_all("Warning") or []


def backtest(name: str, change: Any = None) -> dict[str, Any]:
    doc = yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())
    doc["metadata"]["name"] = name
    if change is not None:
        change(doc["spec"])
    return doc


def invalid(name: str, *causes: tuple[str, str, str]) -> dict[str, Any]:
    """The 422 Status kube-apiserver answers for a Backtest, from (field, reason, body) causes."""
    texts = [f"{field}: {body}" for field, _, body in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": 422,
        "reason": "Invalid",
        "message": f'Backtest.kubetrader.io "{name}" is invalid: {joined}',
        "details": {
            "name": name,
            "group": "kubetrader.io",
            "kind": "Backtest",
            "causes": [{"reason": r, "message": m, "field": f} for f, r, m in causes],
        },
    }


SKIPPED = ("<nil>", "FieldValueInvalid", CEL_SKIPPED.split(": ", 1)[1])

# The invalid CRs and the other schema rules: (case, change to spec, causes)
INVALID_BACKTESTS: list[tuple[str, Any, list[tuple[str, str, str]]]] = [
    (
        "negative cash",
        lambda s: s["broker"].update(cash=-5),
        [
            (
                "spec.broker.cash",
                "FieldValueInvalid",
                "Invalid value: -5: spec.broker.cash in body should be greater than 0",
            )
        ],
    ),
    (
        "cash not a number",
        lambda s: s["broker"].update(cash="lots"),
        [
            (
                "spec.broker.cash",
                "FieldValueTypeInvalid",
                'Invalid value: "string": spec.broker.cash in body must be of type number: "string"',
            ),
            SKIPPED,
        ],
    ),
    (
        "end before start",
        lambda s: s["data"].update(end="2004-01-01"),
        [("spec.data.end", "FieldValueInvalid", "Invalid value: data.end must be after data.start")],
    ),
    (
        "lowercase symbol",
        lambda s: s["data"].update(symbols=["orcl"]),
        [
            (
                "spec.data.symbols[0]",
                "FieldValueInvalid",
                "Invalid value: \"orcl\": spec.data.symbols[0] in body should match '^[A-Z0-9][A-Z0-9._-]{0,31}$'",
            )
        ],
    ),
    (
        "symbol twice",
        lambda s: s["data"].update(symbols=["ORCL", "ORCL"]),
        [("spec.data.symbols[1]", "FieldValueDuplicate", 'Duplicate value: "ORCL"')],
    ),
    (
        "too many symbols",
        lambda s: s["data"].update(symbols=[f"S{i}" for i in range(101)]),
        [("spec.data.symbols", "FieldValueTooMany", "Too many: 101: must have at most 100 items"), SKIPPED],
    ),
    (
        "unknown timeframe",
        lambda s: s["data"].update(timeframe="2d"),
        [
            (
                "spec.data.timeframe",
                "FieldValueNotSupported",
                'Unsupported value: "2d": supported values: "1d", "1h", "5m", "1m"',
            ),
            SKIPPED,
        ],
    ),
    (
        "missing strategy",
        lambda s: s.pop("strategy"),
        [("spec.strategy", "FieldValueRequired", "Required value"), SKIPPED],
    ),
    (
        "not a date",
        lambda s: s["data"].update(start="2005-02-30"),
        [
            (
                "spec.data.start",
                "FieldValueTypeInvalid",
                'Invalid value: "2005-02-30": spec.data.start in body must be of type date: "2005-02-30"',
            ),
            SKIPPED,
        ],
    ),
    (
        "slippage above its maximum",
        lambda s: s["broker"]["slippage"].update(marketBps=1001),
        [
            (
                "spec.broker.slippage.marketBps",
                "FieldValueInvalid",
                "Invalid value: 1001: spec.broker.slippage.marketBps in body should be less than or equal to 1000",
            )
        ],
    ),
]


@pytest.mark.parametrize(("case", "change", "causes"), INVALID_BACKTESTS, ids=[c[0] for c in INVALID_BACKTESTS])
def test_an_invalid_backtest_is_refused_with_the_api_servers_status(
    cluster: EmulatedCluster, case: str, change: Any, causes: list[tuple[str, str, str]]
) -> None:
    name = case.replace(" ", "-")
    status, body, _ = http(cluster, "POST", f"{BACKTESTS}?fieldValidation=Strict", backtest(name, change))
    assert (status, body) == (422, invalid(name, *causes))
    assert cluster.get("Backtest", NS, name) is None


def test_an_unknown_field_is_refused_naming_every_one_under_strict_field_validation(cluster: EmulatedCluster) -> None:
    doc = backtest("typo", lambda s: s["broker"].update(comission={"model": "none"}, slipage={}))
    doc["metadata"]["labelz"] = {"a": "b"}

    status, body, _ = http(cluster, "POST", f"{BACKTESTS}?fieldValidation=Strict", doc)

    assert status == 400 and body["reason"] == "BadRequest"
    assert body["message"] == (
        'Backtest in version "v1alpha1" cannot be handled as a Backtest: strict decoding error: '
        'unknown field "metadata.labelz", unknown field "spec.broker.comission", unknown field "spec.broker.slipage"'
    )


def test_an_unknown_field_is_dropped_with_a_warning_header_under_warn_the_servers_default(
    cluster: EmulatedCluster,
) -> None:
    doc = backtest("typo-warned", lambda s: s["broker"].update(comission={"model": "none"}))

    status, body, warnings = http(cluster, "POST", BACKTESTS, doc)

    assert status == 201 and "comission" not in body["spec"]["broker"]
    assert warnings == ['299 - "unknown field \\"spec.broker.comission\\""']


def test_an_unknown_field_is_dropped_silently_under_ignore(cluster: EmulatedCluster) -> None:
    doc = backtest("typo-ignored", lambda s: s["broker"].update(comission={"model": "none"}))
    status, body, warnings = http(cluster, "POST", f"{BACKTESTS}?fieldValidation=Ignore", doc)
    assert (status, warnings) == (201, []) and "comission" not in body["spec"]["broker"]


def test_defaults_are_filled_in_and_strategy_params_keep_their_unknown_fields(cluster: EmulatedCluster) -> None:
    doc = backtest("defaulted", lambda s: (s["data"].pop("timeframe"), s["strategy"]["params"].update(extra=1)))
    status, body, _ = http(cluster, "POST", f"{BACKTESTS}?fieldValidation=Strict", doc)
    assert status == 201, body
    assert body["spec"]["data"]["timeframe"] == "1d" and body["spec"]["data"]["source"] == "store"
    assert body["spec"]["strategy"]["params"] == {"fast": 10, "slow": 30, "extra": 1}


def test_a_strict_patch_with_an_unknown_field_is_refused_on_the_field_patch(cluster: EmulatedCluster) -> None:
    http(cluster, "POST", BACKTESTS, backtest("patched"))
    patch = {"metadata": {"labels": {"team": "a"}}, "spec": {"oops": 1}}

    status, body, _ = http(
        cluster, "PATCH", f"{BACKTESTS}/patched?fieldValidation=Strict", patch, "application/merge-patch+json"
    )

    assert status == 422 and body["reason"] == "Invalid"
    [cause] = body["details"]["causes"]
    assert cause["field"] == "patch" and cause["reason"] == "FieldValueInvalid"
    assert cause["message"].endswith(': strict decoding error: unknown field "spec.oops"')
    # schema.GroupKind{}.String() is "": the real message starts with a space
    assert body["message"].startswith(' "" is invalid: patch: Invalid value: "{')


def test_editing_a_backtests_spec_is_refused_by_the_crds_transition_rule(cluster: EmulatedCluster) -> None:
    http(cluster, "POST", BACKTESTS, backtest("finished"))
    patch = {"spec": {"strategy": {"params": {"fast": 20}}}}

    status, body, _ = http(cluster, "PATCH", f"{BACKTESTS}/finished", patch, "application/merge-patch+json")

    assert (status, body) == (422, invalid("finished", ("spec", "FieldValueInvalid", f"Invalid value: {IMMUTABLE}")))
    labels = {"metadata": {"labels": {"ok": "yes"}}}  # metadata stays editable
    status, _, _ = http(cluster, "PATCH", f"{BACKTESTS}/finished", labels, "application/merge-patch+json")
    assert status == 200


def test_a_status_outside_its_schema_is_refused_on_the_status_subresource(cluster: EmulatedCluster) -> None:
    http(cluster, "POST", BACKTESTS, backtest("with-status"))
    patch = {"status": {"phase": "Done"}}

    status, body, _ = http(cluster, "PATCH", f"{BACKTESTS}/with-status/status", patch, "application/merge-patch+json")

    assert status == 422
    cause, skipped = body["details"]["causes"]  # an unsupported value is "blocking": CEL rules are not run
    assert cause["field"] == "status.phase" and cause["reason"] == "FieldValueNotSupported"
    assert skipped["field"] == "<nil>" and skipped["message"].endswith(
        "correct the existing errors to complete validation"
    )
    assert cause["message"].startswith('Unsupported value: "Done": supported values: "Pending", "Running"')


def configmap(name: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **meta}, "data": {"k": "v"}}


LABEL_VALUE_RULE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345', regex used for validation "
    "is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
SUBDOMAIN_RULE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LONG = "x" * 64

INVALID_METADATA: list[tuple[str, dict[str, Any], list[tuple[str, str, str]]]] = [
    (
        "name not a subdomain",
        configmap("Sma_Orcl"),
        [("metadata.name", "FieldValueInvalid", f'Invalid value: "Sma_Orcl": {SUBDOMAIN_RULE}')],
    ),
    (
        "label value of 64 characters",
        configmap("long-label", labels={"kubetrader.io/backtest": LONG}),
        [("metadata.labels", "FieldValueInvalid", f'Invalid value: "{LONG}": must be no more than 63 bytes')],
    ),
    (
        "label value with a space",
        configmap("spaced-label", labels={"team": "a b"}),
        [("metadata.labels", "FieldValueInvalid", f'Invalid value: "a b": {LABEL_VALUE_RULE}')],
    ),
    (
        "annotations above 256 KiB",
        configmap("big-annotations", annotations={"a": "x" * (256 * 1024)}),
        [("metadata.annotations", "FieldValueTooLong", "Too long: may not be more than 262144 bytes")],
    ),
    (
        "two controllers",
        configmap(
            "two-controllers",
            ownerReferences=[
                {"apiVersion": "v1", "kind": "ConfigMap", "name": n, "uid": n, "controller": True} for n in "ab"
            ],
        ),
        [
            (
                "metadata.ownerReferences",
                "FieldValueInvalid",
                'Invalid value: [{"apiVersion":"v1","kind":"ConfigMap","name":"a","uid":"a","controller":true},'
                '{"apiVersion":"v1","kind":"ConfigMap","name":"b","uid":"b","controller":true}]: '
                'Only one reference can have Controller set to true. Found "true" in references for '
                "ConfigMap/a, ConfigMap/b",
            )
        ],
    ),
]


@pytest.mark.parametrize(("case", "obj", "causes"), INVALID_METADATA, ids=[c[0] for c in INVALID_METADATA])
def test_invalid_metadata_is_refused_with_the_api_servers_cause(
    cluster: EmulatedCluster, case: str, obj: dict[str, Any], causes: list[tuple[str, str, str]]
) -> None:
    status, body, _ = http(cluster, "POST", CONFIGMAPS, obj)
    assert status == 422, case
    assert [(c["field"], c["reason"], c["message"]) for c in body["details"]["causes"]] == causes
    assert body["message"].startswith(f'ConfigMap "{obj["metadata"]["name"]}" is invalid: ')
    assert "group" not in body["details"] and body["details"]["kind"] == "ConfigMap"


def test_a_create_in_a_namespace_that_does_not_exist_is_not_found(cluster: EmulatedCluster) -> None:
    status, body, _ = http(cluster, "POST", "/api/v1/namespaces/nowhere/configmaps", configmap("cm"))
    assert (status, body["reason"], body["message"]) == (404, "NotFound", 'namespaces "nowhere" not found')
    assert body["details"] == {"name": "nowhere", "kind": "namespaces"}
    status, _, _ = http(cluster, "POST", "/api/v1/namespaces/default/configmaps", configmap("cm"))
    assert status == 201  # default always exists


def job(name: str) -> dict[str, Any]:
    container = {"name": "engine", "image": "ghcr.io/kubetrader/engine:test", "args": ["run"]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}},
    }


def test_a_jobs_template_and_selector_cannot_change(cluster: EmulatedCluster) -> None:
    status, created, _ = http(cluster, "POST", JOBS, job("immutable"))
    assert status == 201
    uid = created["metadata"]["uid"]
    assert created["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert created["spec"]["template"]["metadata"]["labels"]["job-name"] == "immutable"

    changed = copy.deepcopy(created)
    changed["spec"]["template"]["spec"]["containers"][0]["args"] = ["run", "--other"]
    status, body, _ = http(cluster, "PUT", f"{JOBS}/immutable", changed)

    assert status == 422
    assert [(c["field"], c["reason"]) for c in body["details"]["causes"]] == [("spec.template", "FieldValueInvalid")]
    assert body["details"]["causes"][0]["message"].endswith(": field is immutable")
    assert body["message"].startswith('Job.batch "immutable" is invalid: spec.template: Invalid value: ')


def test_a_job_with_an_unknown_field_or_without_containers_is_refused(cluster: EmulatedCluster) -> None:
    typo = job("typo")
    typo["spec"]["backofLimit"] = 3
    status, body, _ = http(cluster, "POST", f"{JOBS}?fieldValidation=Strict", typo)
    assert (status, body["message"]) == (
        400,
        'Job in version "v1" cannot be handled as a Job: strict decoding error: unknown field "spec.backofLimit"',
    )

    empty = job("empty")
    empty["spec"]["template"]["spec"].pop("containers")
    status, body, _ = http(cluster, "POST", JOBS, empty)
    assert status == 422
    assert body["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.template.spec.containers"}
    ]


def test_an_immutable_configmap_keeps_its_data(cluster: EmulatedCluster) -> None:
    frozen = {**configmap("frozen"), "immutable": True}
    assert http(cluster, "POST", CONFIGMAPS, frozen)[0] == 201
    status, body, _ = http(
        cluster, "PATCH", f"{CONFIGMAPS}/frozen", {"data": {"k": "changed"}}, "application/merge-patch+json"
    )
    assert status == 422
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueForbidden",
            "message": "Forbidden: field is immutable when `immutable` is set",
            "field": "data",
        }
    ]


# ---- CEL rules read only what they name (crd_validation._read_paths) ------------------------------


@pytest.mark.parametrize(
    ("rule", "paths"),
    [
        ("size(self.metadata.name) <= 63", (("metadata", "name"),)),
        ("self.end > self.start", (("end",), ("start",))),
        ("!has(self.model) || self.model != 'custom' || has(self.perShare)", (("model",), ("model",), ("perShare",))),
        ("self.name.startsWith('a')", (("name",),)),  # a chain stops before a method call
        ("self.items[0] == 1", (("items",),)),  # and before an index
        ("self == oldSelf", None),  # the value itself
        ("oldSelf.all(s, s in self)", None),
        ("self.all(k, k != '')", None),  # a macro called on self
    ],
)
def test_a_cel_rule_reads_the_paths_it_names(rule: str, paths: tuple[tuple[str, ...], ...] | None) -> None:
    from tests.kube.crd_validation import _read_paths

    assert _read_paths(rule, "self") == paths


def _rules(schema: dict[str, Any], value: Any, old: Any) -> Iterator[tuple[str, Any, Any]]:
    """(rule, the value at its node, the old value there) for every rule the documents reach."""
    for rule in schema.get("x-kubernetes-validations") or []:
        yield rule["rule"], value, old
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                yield from _rules(sub, value[key], old.get(key) if isinstance(old, dict) else None)


def test_cel_outcomes_on_the_parts_a_rule_reads_equal_those_on_the_whole_value() -> None:
    """The cache key is the projection: every rule of every CRD, on each example and on edits of it
    (fields removed, an invalid value), has the outcome it has on the whole value."""
    from tests.kube import crd_validation as cv

    crds = {crd["spec"]["names"]["kind"]: cv.openapi_schema(crd) for crd in load_crds().values()}
    checked = 0
    for path in sorted(EXAMPLES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc.get("kind") not in crds:
            continue
        edits = [doc, copy.deepcopy(doc), copy.deepcopy(doc)]
        edits[1]["spec"].pop(next(iter(edits[1]["spec"])))
        edits[2]["metadata"]["name"] = "x" * 70
        for edit in edits:
            for rule, value, old in _rules(crds[doc["kind"]], edit, doc):
                transition = "oldSelf" in rule
                whole = cv._evaluate(rule, json.dumps(value, sort_keys=True), json.dumps(old) if transition else "")
                assert cv._evaluate_rule(rule, value, old if transition else None) == whole, rule
                checked += 1
    assert checked > 20


@pytest.mark.parametrize(
    ("rule", "value", "cause"),
    [
        # apiextensions-apiserver schema/cel/validation.go: "%v evaluating rule: %v" with cel-go's
        # error text (common/types: "no such key: %v", "no such overload").
        ("self.x > 1", {}, 'spec: Invalid value: "object": no such key: x evaluating rule: failed rule: self.x > 1'),
        (
            "self.x + 1 > 0",
            {"x": "a"},
            'spec: Invalid value: "object": no such overload evaluating rule: failed rule: self.x + 1 > 0',
        ),
        # The strings library kube-apiserver adds (ext.Strings): lowerAscii, split.
        ("self.x.lowerAscii() == 'abc'", {"x": "aBc"}, None),
        # A failed rule on an object shows no value (fieldErrorForReason omits maps and lists).
        ("self.x.split(',').size() <= 2", {"x": "a,b,c"}, "spec: Invalid value: failed rule: self.x.split"),
        ("self.x > 1.5", {"x": 2}, None),  # int against double: cross-type numeric comparison
    ],
)
def test_a_cel_rule_that_fails_at_run_time_is_refused_with_cel_gos_words(
    rule: str, value: dict[str, Any], cause: str | None
) -> None:
    from tests.kube import crd_validation as cv

    schema = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "x-kubernetes-validations": [{"rule": rule}],
    }
    causes = [str(c) for c in cv.cel_causes(schema, value, path="spec")]
    if cause is None:
        assert causes == []
    else:
        assert len(causes) == 1 and causes[0].startswith(cause), causes
