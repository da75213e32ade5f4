"""Stand-ins for a Kubernetes API server, shared by every test that needs one.

- admission (see README.md): `admission` runs the chain on every write; `crd_validation`
  what apiextensions-apiserver does with a custom resource (pruning, defaulting, the
  openAPIV3Schema, CEL `x-kubernetes-validations`); `metadata` ObjectMeta's rules;
  `field_errors` the `Status`/causes wording; `gc` the garbage collector.
- `emulator`: `KubeEmulator`, kmock's KubernetesEmulator extended with the parts of
  the API server that controllers rely on (uid, resourceVersion, generation, the status
  subresource, optimistic concurrency, JSON/merge patches, garbage collection).
- `cluster`: `EmulatedCluster`, the emulator on a loopback port in a background thread
  with a kubeconfig file, and a synchronous client for tests.
- kubectl's needs (see README.md): `discovery`, `openapi`, `tables`, `logs`, `events`,
  `selectors`, `paging`, `apply` (server-side apply), `defaulting`; `kubectl` runs the real
  kubectl; `sandbox` is `make sandbox`.
- `authn`, `rbac`, `access`: bearer-token authentication, kube-apiserver's RBAC authorizer
  (pure functions over the stored Roles and bindings) and the check the emulator runs
  before every handler; `chart_rbac`: the chart's RBAC for the operator fixtures, and the
  record of the operator's requests that `test_chart_rbac_replay` replays (README.md).
- `kubelet`: `FakeKubelet`, plays kubelet and Job controller for one Job: runs its
  container as a local process and writes the Pod and Job status as Kubernetes does.
"""
