"""Create the chart's generated Secrets once, for installs rendered without a cluster.

`helm template` (Argo CD, Flux post-renderers) cannot `lookup` existing Secrets, so a
rendered random value would change on every sync. This pre-install/pre-upgrade hook Job
creates each missing Secret with a new random value and never touches one that exists (no
rotation, no drift). Copies of one Secret name in several namespaces (the Redis password for
the operator's Jobs) get the same value. Runs in the operator image (the `kubernetes` client).
"""

import base64
import json
import os
import secrets
import string
import sys

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

ALPHABET = string.ascii_letters + string.digits  # URL-safe: the passwords go into connection URLs


def main() -> int:
    wanted = json.loads(os.environ["KUBETRADER_SECRETS"])
    labels = json.loads(os.environ.get("KUBETRADER_SECRET_LABELS", "{}"))
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # the hook Job's ServiceAccount
    else:
        config.load_kube_config()  # KUBECONFIG: the chart's tests run it against the emulated API
    core = client.CoreV1Api()
    values: dict[str, str] = {}
    existing: dict[tuple[str, str], bool] = {}
    for item in wanted:  # first pass: reuse a value that already exists in any namespace
        try:
            secret = core.read_namespaced_secret(item["name"], item["namespace"])
        except ApiException as exc:
            if exc.status != 404:
                raise
            existing[(item["namespace"], item["name"])] = False
            continue
        existing[(item["namespace"], item["name"])] = True
        data = secret.data or {}
        if item["key"] in data:
            values.setdefault(item["name"], base64.b64decode(data[item["key"]]).decode())
    for item in wanted:
        where = f"{item['namespace']}/{item['name']}"
        if existing[(item["namespace"], item["name"])]:
            print(f"kept    Secret {where} (exists)", flush=True)
            continue
        value = values.setdefault(item["name"], "".join(secrets.choice(ALPHABET) for _ in range(int(item["length"]))))
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=item["name"],
                namespace=item["namespace"],
                labels={**labels, "app.kubernetes.io/component": item["component"]},
            ),
            type="Opaque",
            data={item["key"]: base64.b64encode(value.encode()).decode()},
        )
        try:
            core.create_namespaced_secret(item["namespace"], body)
        except ApiException as exc:
            if exc.status != 409:  # created meanwhile by another run: keep that one
                raise
        print(f"created Secret {where}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
